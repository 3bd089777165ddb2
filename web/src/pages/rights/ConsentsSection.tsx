import { useRef, useState } from "react";
import { api } from "../../api/client";
import type { Consent } from "../../api/types";
import { announce } from "../../components/Announcer";
import { ErrorText } from "../../components/ErrorText";
import { useFormat, useT, type T } from "../../i18n";
import { consentActions, consentStatusKey, purposeKey, purposeLabel, replaceById, type ConsentAction } from "./rights";
import { usePaged } from "./usePaged";
import { ShowMore } from "./ShowMore";

const fetchConsents = async (before: number | undefined, signal?: AbortSignal) => {
  const page = await api.consents(before, signal);
  return { items: page.consents, next: page.next_before };
};

const DECIDE: Record<ConsentAction, (id: string) => Promise<Consent>> = {
  grant: api.grantConsent,
  refuse: api.refuseConsent,
  revoke: api.revokeConsent,
};

const ACTION_LABEL = { grant: "grant", refuse: "refuse", revoke: "revokeConsent" } as const;

export function statusText(t: T, status: string): string {
  const key = consentStatusKey(status);
  return key ? t(key) : status;
}

/** A purpose in the chosen language, or as words of its DPV term when it is a new one. */
export function purposeText(t: T, term: string): string {
  const key = purposeKey(term);
  return key ? t(key) : purposeLabel(term);
}

export function ConsentsSection() {
  const t = useT();
  const f = useFormat();
  const consents = usePaged(fetchConsents, (c) => c.id);
  const [busy, setBusy] = useState<string | null>(null);
  const [failed, setFailed] = useState<{ id: string; error: unknown } | null>(null);
  const listRef = useRef<HTMLUListElement>(null);

  const decide = async (c: Consent, action: ConsentAction) => {
    setBusy(c.id);
    setFailed(null);
    try {
      const decided = await DECIDE[action](c.id);
      consents.update((list) => replaceById(list, decided));
      announce(t("consentDecided", { service: decided.service, status: statusText(t, decided.status) }));
      // The button pressed is gone (its state changed): keep the person at this consent.
      requestAnimationFrame(() => document.getElementById(`consent-${c.id}`)?.focus());
    } catch (e) {
      setFailed({ id: c.id, error: e });
    } finally {
      setBusy(null);
    }
  };

  const list = consents.items;
  return (
    <section aria-labelledby="h-consents">
      <div className="section-head">
        <h2 id="h-consents">{t("consentsTitle")}</h2>
        <button type="button" className="btn-small" aria-label={`${t("refresh")} – ${t("consentsTitle")}`} onClick={consents.reload}>
          {t("refresh")}
        </button>
      </div>
      <p className="muted">{t("consentsIntro")}</p>
      <ErrorText error={consents.error} />
      {list && list.length === 0 && <p>{t("noConsents")}</p>}
      <ul className="rights-list" ref={listRef} tabIndex={-1} aria-labelledby="h-consents">
        {list?.map((c) => (
          <li key={c.id} className={`card consent consent-${c.status}`} data-testid="consent" data-status={c.status}>
            <div className="card-head">
              <h3 id={`consent-${c.id}`} tabIndex={-1}>
                {c.service}
              </h3>
              <span className={`badge badge-${c.status}`}>{statusText(t, c.status)}</span>
            </div>
            <dl className="kv">
              <dt>{t("purpose")}</dt>
              <dd>
                {purposeText(t, c.purpose)} <code className="term">{c.purpose}</code>
              </dd>
              <dt>{t("measurementTypes")}</dt>
              <dd>{c.types.join(", ")}</dd>
              <dt>{t("retention")}</dt>
              <dd>{t("retentionDays", { n: f.num(c.retention_days) })}</dd>
              <dt>{t("thirdParties")}</dt>
              <dd>{c.third_parties.length > 0 ? c.third_parties.join(", ") : t("none")}</dd>
              <dt>{t("asked")}</dt>
              <dd>{f.date(c.created_ms)}</dd>
              {c.decided_ms !== null && (
                <>
                  <dt>{t("decided")}</dt>
                  <dd>{f.date(c.decided_ms)}</dd>
                </>
              )}
            </dl>
            {c.receipts.length > 0 && (
              <>
                <p className="h4">{t("receipts")}</p>
                <ul className="receipt-links">
                  {c.receipts.map((r) => {
                    const text = t("receiptLink", { status: statusText(t, r.status), date: f.date(r.created_ms) });
                    return (
                      <li key={r.receipt_id}>
                        <a href={api.receiptUrl(c.id, r.receipt_id)} download aria-label={`${text} – ${c.service}`}>
                          {text}
                        </a>
                      </li>
                    );
                  })}
                </ul>
              </>
            )}
            {failed?.id === c.id && <ErrorText error={failed.error} />}
            {consentActions(c.status).length > 0 && (
              <div className="actions">
                {consentActions(c.status).map((a) => (
                  <button
                    key={a}
                    type="button"
                    className={a === "grant" ? "btn-primary" : a === "revoke" ? "btn-danger" : undefined}
                    disabled={busy === c.id}
                    onClick={() => void decide(c, a)}
                    aria-label={`${t(ACTION_LABEL[a])} – ${c.service}`}
                  >
                    {t(ACTION_LABEL[a])}
                  </button>
                ))}
              </div>
            )}
          </li>
        ))}
      </ul>
      <ShowMore paged={consents} after={listRef} />
    </section>
  );
}
