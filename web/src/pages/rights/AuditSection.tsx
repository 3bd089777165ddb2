import { useRef } from "react";
import { api } from "../../api/client";
import type { Device } from "../../api/types";
import { ErrorText } from "../../components/ErrorText";
import { useFormat, useT, type Key } from "../../i18n";
import { ShowMore } from "./ShowMore";
import { usePaged } from "./usePaged";

const fetchAudit = async (before: number | undefined, signal?: AbortSignal) => {
  const page = await api.audit(before, signal);
  return { items: page.entries, next: page.next_before };
};

/** A label of the table's own words, or the server's word when it is a new one. */
function known(t: (k: Key) => string, prefix: "actor_" | "channel_", word: string): string {
  const key = `${prefix}${word}` as Key;
  const text = t(key);
  return text === key ? word : text;
}

export function AuditSection({ devices }: { devices: Device[] | undefined }) {
  const t = useT();
  const f = useFormat();
  const audit = usePaged(fetchAudit, (e) => e.id);
  const tableRef = useRef<HTMLDivElement>(null);
  const deviceName = (id: string) => devices?.find((d) => d.id === id)?.name;

  const entries = audit.items;
  return (
    <section aria-labelledby="h-audit">
      <div className="section-head">
        <h2 id="h-audit">{t("auditTitle")}</h2>
        <button type="button" className="btn-small" aria-label={`${t("refresh")} – ${t("auditTitle")}`} onClick={audit.reload}>
          {t("refresh")}
        </button>
      </div>
      <p className="muted">{t("auditIntro")}</p>
      <ErrorText error={audit.error} />
      {entries && entries.length === 0 && <p>{t("noAudit")}</p>}
      {entries && entries.length > 0 && (
        // Wider than a phone: the table scrolls sideways in its own box, which takes the focus
        // so a keyboard can scroll it too.
        <div className="table-scroll" ref={tableRef} tabIndex={0} role="region" aria-label={t("auditTableLabel")}>
          <table className="data-table" data-testid="audit-table">
            <thead>
              <tr>
                <th scope="col">{t("auditWhen")}</th>
                <th scope="col">{t("auditWho")}</th>
                <th scope="col">{t("auditHow")}</th>
                <th scope="col">{t("device")}</th>
                <th scope="col" className="num">
                  {t("auditCount")}
                </th>
                <th scope="col">{t("auditConsent")}</th>
              </tr>
            </thead>
            <tbody>
              {entries.map((e) => (
                <tr key={e.id} data-testid="audit-entry" data-id={e.id}>
                  <td className="nowrap">{f.date(e.last_ms, "datetimesec")}</td>
                  <td>
                    {e.actor} <span className="muted small">({known(t, "actor_", e.actor_kind)})</span>
                  </td>
                  <td>
                    {known(t, "channel_", e.channel)}
                    <br />
                    <code className="detail">{e.detail}</code>
                  </td>
                  <td>{e.device ? deviceName(e.device) ?? <code>{e.device}</code> : "–"}</td>
                  <td className="num">{f.num(e.count)}</td>
                  <td>{e.consent_id ? <code title={e.consent_id}>{e.consent_id.slice(0, 8)}</code> : t("none")}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <ShowMore paged={audit} after={tableRef} />
    </section>
  );
}
