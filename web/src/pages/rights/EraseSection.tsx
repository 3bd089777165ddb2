import { useEffect, useRef, useState, type FormEvent } from "react";
import { api } from "../../api/client";
import { endSession } from "../../api/session";
import type { Device, Erased, EraseRequest } from "../../api/types";
import { announce } from "../../components/Announcer";
import { Dialog } from "../../components/Dialog";
import { ErrorText } from "../../components/ErrorText";
import { useFormat, useT, type Key, type T } from "../../i18n";
import { navigate } from "../../router";
import { erasedParts, eraseRequest, type EraseForm, type EraseFormError } from "./rights";

/** A device as the picker names it: its name, its id when that differs (names need not be unique). */
function deviceOption(d: Device, t: T): string {
  const name = d.revoked_ms !== null ? t("revokedMark", { name: d.name }) : d.name;
  return d.id === d.name ? name : `${name} · ${d.id}`;
}

/** "Measurements: 1,440; activity segments: 3; …" in the chosen language. */
function useCounts() {
  const t = useT();
  const f = useFormat();
  return (e: Erased, account: boolean) =>
    erasedParts(e, account)
      .map(([key, n]) => t(key, { n: f.num(n) }))
      .join("; ");
}

export function EraseSection({ devices }: { devices: Device[] | undefined }) {
  const t = useT();
  const f = useFormat();
  const counts = useCounts();
  const [form, setForm] = useState<EraseForm>({ device: "", from: "", to: "" });
  const [formError, setFormError] = useState<EraseFormError | null>(null);
  const [confirm, setConfirm] = useState<EraseRequest | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState("");

  const check = (e: FormEvent) => {
    e.preventDefault();
    const checked = eraseRequest(form, f.tz);
    if ("error" in checked) {
      setFormError(checked.error);
      return;
    }
    setFormError(null);
    setError(null);
    setConfirm(checked.request);
  };

  const erase = async () => {
    if (!confirm) return;
    setBusy(true);
    setError(null);
    try {
      const erased = await api.erase(confirm);
      const message = t("erasedDone", { counts: counts(erased, false) });
      setResult(message);
      announce(message);
      setConfirm(null);
      setForm({ device: "", from: "", to: "" });
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  const what = (r: EraseRequest) => {
    const device = r.device ? devices?.find((d) => d.id === r.device)?.name ?? r.device : null;
    return [
      device ? t("eraseWhatDevice", { device }) : t("eraseWhatAll"),
      r.from_ms !== undefined ? t("eraseWhatFrom", { date: f.date(r.from_ms) }) : "",
      r.to_ms !== undefined ? t("eraseWhatTo", { date: f.date(r.to_ms) }) : "",
    ]
      .filter(Boolean)
      .join(" ");
  };

  const invalid = (field: "device" | "time") =>
    (formError === "eraseNeedsSomething" && field === "device") || (formError !== null && formError !== "eraseNeedsSomething" && field === "time")
      ? true
      : undefined;

  return (
    <section aria-labelledby="h-erase">
      <h2 id="h-erase">{t("eraseTitle")}</h2>
      <p className="muted">{t("eraseIntro")}</p>
      <form className="form-row" onSubmit={check} noValidate>
        <div className="field">
          <label htmlFor="erase-device">{t("device")}</label>
          <select
            id="erase-device"
            value={form.device}
            onChange={(e) => setForm({ ...form, device: e.target.value })}
            aria-invalid={invalid("device")}
            aria-describedby={formError ? "erase-form-error" : undefined}
          >
            <option value="">{t("allDevices")}</option>
            {devices?.map((d) => (
              <option key={d.id} value={d.id}>
                {deviceOption(d, t)}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="erase-from">{t("eraseFrom")}</label>
          <input
            id="erase-from"
            type="datetime-local"
            value={form.from}
            onChange={(e) => setForm({ ...form, from: e.target.value })}
            aria-invalid={invalid("time")}
            aria-describedby={formError ? "erase-tz erase-form-error" : "erase-tz"}
          />
        </div>
        <div className="field">
          <label htmlFor="erase-to">{t("eraseTo")}</label>
          <input
            id="erase-to"
            type="datetime-local"
            value={form.to}
            onChange={(e) => setForm({ ...form, to: e.target.value })}
            aria-invalid={invalid("time")}
            aria-describedby={formError ? "erase-tz erase-form-error" : "erase-tz"}
          />
        </div>
        <p className="hint small form-note" id="erase-tz">
          {t("eraseTimesIn", { tz: f.tz.replace(/_/g, " ") })}
        </p>
        <div className="form-submit">
          <button type="submit" className="btn-danger">
            {t("eraseButton")}
          </button>
        </div>
        {formError && (
          <p className="error form-note" id="erase-form-error" role="alert">
            {t(formError as Key)}
          </p>
        )}
      </form>
      {result && (
        <p className="result" data-testid="erase-result">
          {result}
        </p>
      )}

      {confirm && (
        <Dialog title={t("eraseConfirmTitle")} onClose={() => setConfirm(null)} closeLabel={t("close")}>
          <p>{t("eraseConfirmBody", { what: what(confirm) })}</p>
          <ErrorText error={error} />
          <div className="dialog-actions">
            <button type="button" onClick={() => setConfirm(null)}>
              {t("cancel")}
            </button>
            <button type="button" className="btn-danger" onClick={() => void erase()} disabled={busy}>
              {t("erase")}
            </button>
          </div>
        </Dialog>
      )}
    </section>
  );
}

export function AccountSection({ owner }: { owner: string }) {
  const t = useT();
  const counts = useCounts();
  const [open, setOpen] = useState(false);
  const [typed, setTyped] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const inputRef = useRef<HTMLInputElement>(null);

  // The dialog places its first focus on its close button; the name field is where to type.
  useEffect(() => {
    if (!open) return;
    const r = requestAnimationFrame(() => inputRef.current?.focus());
    return () => cancelAnimationFrame(r);
  }, [open]);

  const remove = async (e: FormEvent) => {
    e.preventDefault();
    if (typed !== owner) return;
    setBusy(true);
    setError(null);
    try {
      const erased = await api.deleteAccount(typed);
      const message = t("accountDeleted", { counts: counts(erased, true) });
      announce(message);
      // The session died with the account: back to the sign-in form, which says what happened.
      navigate("/", { replace: true });
      endSession(message);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return (
    <section aria-labelledby="h-account">
      <h2 id="h-account">{t("deleteAccountTitle")}</h2>
      <p className="muted">{t("deleteAccountIntro")}</p>
      <button type="button" className="btn-danger" onClick={() => (setTyped(""), setError(null), setOpen(true))}>
        {t("deleteAccountButton")}
      </button>
      {open && (
        <Dialog title={t("deleteAccountConfirmTitle")} onClose={() => setOpen(false)} closeLabel={t("close")}>
          <form onSubmit={remove} noValidate>
            <p>{t("deleteAccountIntro")}</p>
            <div className="field">
              <label htmlFor="confirm-owner">{t("deleteAccountType", { name: owner })}</label>
              <input
                ref={inputRef}
                id="confirm-owner"
                autoComplete="off"
                spellCheck={false}
                value={typed}
                onChange={(e) => setTyped(e.target.value)}
                aria-describedby={error ? "delete-error" : undefined}
              />
            </div>
            <ErrorText error={error} id="delete-error" />
            <div className="dialog-actions">
              <button type="button" onClick={() => setOpen(false)}>
                {t("cancel")}
              </button>
              <button type="submit" className="btn-danger" disabled={busy || typed !== owner}>
                {t("deleteAccountTitle")}
              </button>
            </div>
          </form>
        </Dialog>
      )}
    </section>
  );
}
