import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The build must be reproducible: content-hashed names, no source maps,
// no timestamps. CI rebuilds and compares with the committed dist/.
export default defineConfig({
  plugins: [react()],
  build: {
    outDir: "dist",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
  server: {
    proxy: {
      "/api": { target: "http://127.0.0.1:8080", changeOrigin: false },
    },
  },
  test: {
    include: ["src/**/*.test.ts"],
    environment: "node",
  },
});
