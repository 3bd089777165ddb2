// Your rights (/rights): the consents services asked of the owner and their receipts, the
// audit log of every read, pooled packs, and erasure of data or of the whole account.
import { api } from "../../api/client";
import { useSession } from "../../api/session";
import { useApi } from "../../api/useApi";
import { useT } from "../../i18n";
import { usePageTitle } from "../../usePageTitle";
import { AuditSection } from "./AuditSection";
import { ConsentsSection } from "./ConsentsSection";
import { AccountSection, EraseSection } from "./EraseSection";
import { PacksSection } from "./PacksSection";

export function RightsPage() {
  const t = useT();
  usePageTitle(t("rightsTitle"));
  const session = useSession();
  const devices = useApi((s) => api.devices(s), []);
  const owner = session.status === "signed" || session.status === "expired" ? session.owner : "";
  return (
    <>
      <h1>{t("rightsTitle")}</h1>
      <p>{t("rightsIntro")}</p>
      <ConsentsSection />
      <AuditSection devices={devices.data} />
      <PacksSection />
      <EraseSection devices={devices.data} />
      {owner && <AccountSection owner={owner} />}
    </>
  );
}
