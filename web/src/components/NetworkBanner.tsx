import { useSyncExternalStore } from "react";
import { networkDown } from "../api/client";
import { useT } from "../i18n";

export function NetworkBanner() {
  const t = useT();
  const down = useSyncExternalStore(networkDown.subscribe, networkDown.get);
  return (
    <div role="status" aria-live="polite" className={down ? "banner" : "visually-hidden"}>
      {down ? t("networkDown") : ""}
    </div>
  );
}
