import { useT } from "../i18n";
import { announce } from "./Announcer";

export function CopyButton({ text, what }: { text: string; what: string }) {
  const t = useT();
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      announce(t("copied"));
    } catch {
      announce(t("copyFailed"));
    }
  };
  return (
    <button type="button" className="btn-small" onClick={copy} aria-label={t("copyWhat", { what })}>
      {t("copy")}
    </button>
  );
}
