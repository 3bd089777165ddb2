import { useEffect, useState, type FormEvent } from "react";
import { api } from "../../api/client";
import type { PackOffer } from "../../api/types";
import { useApi } from "../../api/useApi";
import { announce } from "../../components/Announcer";
import { ErrorText } from "../../components/ErrorText";
import { useFormat, useT } from "../../i18n";
import { localeOf } from "../../lib/format";
import { purposeText } from "./ConsentsSection";
import { formatMoney, packSettingsBody, type PackSettingsForm } from "./rights";

export function PacksSection() {
  const t = useT();
  const f = useFormat();
  const locale = localeOf(f.lang);
  const offers = useApi((s) => api.packs(s), []);
  const settings = useApi((s) => api.packSettings(s), []);
  const earnings = useApi((s) => api.earnings(s), []);

  const [busy, setBusy] = useState<string | null>(null);
  const [failed, setFailed] = useState<{ id: string; error: unknown } | null>(null);
  const [form, setForm] = useState<PackSettingsForm | null>(null);
  const [formError, setFormError] = useState<unknown>(null);
  const [ceilingInvalid, setCeilingInvalid] = useState(false);
  const [saving, setSaving] = useState(false);

  // The form starts from what the server has, once; later answers (a save) refill it.
  useEffect(() => {
    const s = settings.data;
    if (s) setForm({ ceiling: String(s.budget_ceiling), ageBand: s.age_band ?? "", region: s.region ?? "" });
  }, [settings.data]);

  const decide = async (p: PackOffer) => {
    const joining = p.status !== "joined";
    setBusy(p.id);
    setFailed(null);
    try {
      await (joining ? api.joinPack(p.id) : api.withdrawPack(p.id));
      announce(t(joining ? "packJoined" : "packWithdrawn", { title: p.title }));
      offers.reload();
      earnings.reload();
      requestAnimationFrame(() => document.getElementById(`pack-${p.id}`)?.focus());
    } catch (e) {
      setFailed({ id: p.id, error: e });
    } finally {
      setBusy(null);
    }
  };

  const save = async (e: FormEvent) => {
    e.preventDefault();
    if (!form) return;
    const checked = packSettingsBody(form);
    setFormError(null);
    if ("error" in checked) {
      setCeilingInvalid(true);
      return;
    }
    setCeilingInvalid(false);
    setSaving(true);
    try {
      await api.setPackSettings(checked.body);
      settings.reload();
      offers.reload(); // whether each pack's cohort fits follows the profile
      announce(t("packSettingsSaved"));
    } catch (err) {
      setFormError(err);
    } finally {
      setSaving(false);
    }
  };

  const cohort = (p: PackOffer) => {
    const parts = [
      p.cohort.age_band !== null ? t("packAgeBand", { v: p.cohort.age_band }) : "",
      p.cohort.region !== null ? t("packRegion", { v: p.cohort.region }) : "",
    ].filter(Boolean);
    return parts.length ? parts.join(", ") : t("packCohortAll");
  };
  const title = (id: string) => offers.data?.find((p) => p.id === id)?.title ?? id;

  const s = settings.data;
  const e = earnings.data;
  return (
    <section aria-labelledby="h-packs">
      <h2 id="h-packs">{t("packsTitle")}</h2>
      <p className="muted">{t("packsIntro")}</p>

      <h3>{t("packOffers")}</h3>
      <ErrorText error={offers.error} />
      {offers.data && offers.data.length === 0 && <p>{t("noPacks")}</p>}
      <ul className="rights-list">
        {offers.data?.map((p) => {
          const place = p.status ?? "none";
          return (
            <li key={p.id} className="card pack" data-testid="pack" data-status={place}>
              <div className="card-head">
                <h4 id={`pack-${p.id}`} tabIndex={-1}>
                  {p.title}
                </h4>
                <span className={`badge badge-${place === "joined" ? "granted" : "revoked"}`}>
                  {t(`packPlace_${place}`)}
                </span>
              </div>
              <dl className="kv">
                <dt>{t("packBuyer")}</dt>
                <dd>{p.buyer}</dd>
                <dt>{t("measurement")}</dt>
                <dd>{p.measurement}</dd>
                <dt>{t("purpose")}</dt>
                <dd>{purposeText(t, p.purpose)}</dd>
                <dt>{t("packDays")}</dt>
                <dd>{t("packDaysValue", { from: p.from, to: p.to })}</dd>
                <dt>{t("packEpsilon")}</dt>
                <dd>{f.num(p.epsilon)}</dd>
                <dt>{t("packPrice")}</dt>
                <dd>{formatMoney(p.price_cents, p.currency, locale)}</dd>
                <dt>{t("packCohort")}</dt>
                <dd>{cohort(p)}</dd>
              </dl>
              {!p.fits_cohort && p.status !== "joined" && <p className="muted small">{t("packNotForYou")}</p>}
              {failed?.id === p.id && <ErrorText error={failed.error} />}
              <div className="actions">
                <button
                  type="button"
                  className={p.status === "joined" ? undefined : "btn-primary"}
                  disabled={busy === p.id || (p.status !== "joined" && !p.fits_cohort)}
                  onClick={() => void decide(p)}
                  aria-label={`${t(p.status === "joined" ? "withdraw" : "join")} – ${p.title}`}
                >
                  {t(p.status === "joined" ? "withdraw" : "join")}
                </button>
              </div>
            </li>
          );
        })}
      </ul>

      <h3>{t("packSettingsTitle")}</h3>
      <ErrorText error={settings.error} />
      {form && (
        <form className="form-row" onSubmit={save} noValidate>
          <div className="field">
            <label htmlFor="budget-ceiling">{t("budgetCeiling")}</label>
            <input
              id="budget-ceiling"
              inputMode="decimal"
              value={form.ceiling}
              onChange={(ev) => setForm({ ...form, ceiling: ev.target.value })}
              aria-invalid={ceilingInvalid || undefined}
              aria-describedby={ceilingInvalid ? "budget-hint budget-error" : "budget-hint"}
            />
            {s && (
              <p className="hint small" id="budget-hint">
                {t("budgetHint", { spent: f.num(s.spent), left: f.num(s.left) })}
              </p>
            )}
            {ceilingInvalid && (
              <p className="error" id="budget-error" role="alert">
                {t("errCeiling")}
              </p>
            )}
          </div>
          <div className="field">
            <label htmlFor="age-band">{t("ageBand")}</label>
            <input
              id="age-band"
              maxLength={64}
              value={form.ageBand}
              onChange={(ev) => setForm({ ...form, ageBand: ev.target.value })}
              aria-describedby="profile-hint"
            />
          </div>
          <div className="field">
            <label htmlFor="region">{t("region")}</label>
            <input
              id="region"
              maxLength={64}
              value={form.region}
              onChange={(ev) => setForm({ ...form, region: ev.target.value })}
              aria-describedby="profile-hint"
            />
          </div>
          <p className="hint small form-note" id="profile-hint">
            {t("profileHint")}
          </p>
          <div className="form-submit">
            <button type="submit" className="btn-primary" disabled={saving}>
              {t("save")}
            </button>
          </div>
          <ErrorText error={formError} />
        </form>
      )}

      <h3>{t("earningsTitle")}</h3>
      <ErrorText error={earnings.error} />
      {e && e.entries.length === 0 && <p>{t("noEarnings")}</p>}
      {e && e.entries.length > 0 && (
        <>
          <div className="table-scroll" tabIndex={0} role="region" aria-label={t("earningsTitle")}>
            <table className="data-table" data-testid="earnings-table">
              <thead>
                <tr>
                  <th scope="col">{t("time")}</th>
                  <th scope="col">{t("pack")}</th>
                  <th scope="col" className="num">
                    {t("packRelease")}
                  </th>
                  <th scope="col" className="num">
                    ε
                  </th>
                  <th scope="col" className="num">
                    {t("amount")}
                  </th>
                </tr>
              </thead>
              <tbody>
                {e.entries.map((x) => (
                  <tr key={`${x.pack}-${x.seq}`}>
                    <td className="nowrap">{f.date(x.at_ms)}</td>
                    <td>{title(x.pack)}</td>
                    <td className="num">{f.num(x.seq)}</td>
                    <td className="num">{f.num(x.epsilon)}</td>
                    <td className="num">{formatMoney(x.amount_cents, x.currency, locale)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
          <p data-testid="earnings-total">
            {t("earningsTotal", {
              amounts: Object.entries(e.totals_cents)
                .map(([cur, cents]) => formatMoney(cents, cur, locale))
                .join(", "),
              eps: f.num(e.epsilon_spent),
            })}
          </p>
        </>
      )}
    </section>
  );
}
