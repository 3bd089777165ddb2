import { useState } from "react";
import { api } from "../../api/client";
import { useApi } from "../../api/useApi";
import { announce } from "../../components/Announcer";
import { ErrorText } from "../../components/ErrorText";
import { useT } from "../../i18n";
import { Link } from "../../router";
import { usePageTitle } from "../../usePageTitle";

export function DataPage() {
  const t = useT();
  usePageTitle(t("dataTitle"));
  const settings = useApi((s) => api.activitySettings(s), []);
  const [enabled, setEnabled] = useState<boolean | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const on = enabled ?? settings.data?.enabled ?? false;

  const toggle = async () => {
    const next = !on;
    setBusy(true);
    setError(null);
    try {
      const r = await api.setActivitySettings({ enabled: next });
      const v = r && typeof r.enabled === "boolean" ? r.enabled : next;
      setEnabled(v);
      announce(v ? t("behaviourOn") : t("behaviourOff"));
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <>
      <h1>{t("dataTitle")}</h1>
      <section aria-labelledby="h-export">
        <h2 id="h-export">{t("export")}</h2>
        <p>{t("exportIntro")}</p>
        <ul className="export-links">
          <li>
            <a href={api.exportUrl("senml")} download>
              {t("exportSenml")}
            </a>
          </li>
          <li>
            <a href={api.exportUrl("csv")} download>
              {t("exportCsv")}
            </a>
          </li>
          <li>
            <a href={api.exportUrl("parquet")} download>
              {t("exportParquet")}
            </a>
          </li>
        </ul>
      </section>

      <section aria-labelledby="h-takeout">
        <h2 id="h-takeout">{t("takeout")}</h2>
        <p>{t("takeoutIntro")}</p>
        <p>
          <a href={api.takeoutUrl} download>
            {t("takeoutLink")}
          </a>
        </p>
      </section>

      <section aria-labelledby="h-model">
        <h2 id="h-model">{t("behaviourModel")}</h2>
        <p id="model-intro">{t("behaviourIntro")}</p>
        <ErrorText error={settings.error} />
        <div className="switch-row">
          <button
            type="button"
            role="switch"
            className="switch-btn"
            aria-checked={on}
            aria-describedby="model-intro model-error"
            disabled={busy || !settings.data}
            onClick={toggle}
          >
            <span className="switch-track" aria-hidden="true">
              <span className="switch-thumb" />
            </span>
            {t("behaviourSwitch")}
          </button>
        </div>
        <ErrorText error={error} id="model-error" />
      </section>

      <section aria-labelledby="h-rights">
        <h2 id="h-rights">{t("yourRights")}</h2>
        <p>{t("yourRightsBody")}</p>
        <p>
          <Link href="/rights">{t("yourRightsLink")}</Link>
        </p>
      </section>
    </>
  );
}
