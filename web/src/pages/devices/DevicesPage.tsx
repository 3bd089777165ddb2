import { useState, type FormEvent } from "react";
import { api } from "../../api/client";
import type { Device } from "../../api/types";
import { useApi, useNow } from "../../api/useApi";
import { announce } from "../../components/Announcer";
import { Dialog } from "../../components/Dialog";
import { ErrorText } from "../../components/ErrorText";
import { useFormat, useT } from "../../i18n";
import { usePageTitle } from "../../usePageTitle";
import { topicFor, type Credentials } from "./data";
import { TokenPanel } from "./TokenPanel";

type Confirm = { kind: "revoke" | "rotate"; device: Device } | null;

export function DevicesPage() {
  const t = useT();
  const f = useFormat();
  usePageTitle(t("devicesTitle"));
  const now = useNow(30_000);
  const devices = useApi((s) => api.devices(s), []);
  const info = useApi((s) => api.info(s), []);
  const dead = useApi((s) => api.deadLetters(100, s), []);

  const [name, setName] = useState("");
  const [addError, setAddError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [cred, setCred] = useState<Credentials | null>(null);
  const [confirm, setConfirm] = useState<Confirm>(null);
  const [confirmError, setConfirmError] = useState<unknown>(null);

  const add = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setAddError(null);
    try {
      const r = await api.createDevice(name.trim());
      setCred({ id: r.id, name: r.name, token: r.token, topic: r.topic });
      setName("");
      announce(t("deviceAdded", { name: r.name }));
      devices.reload();
    } catch (err) {
      setAddError(err);
    } finally {
      setBusy(false);
    }
  };

  const doConfirm = async () => {
    if (!confirm) return;
    const d = confirm.device;
    setBusy(true);
    setConfirmError(null);
    try {
      if (confirm.kind === "revoke") {
        await api.revokeDevice(d.id);
        announce(t("revoked", { name: d.name }));
      } else {
        const r = await api.rotateToken(d.id);
        setCred({ id: r.id, name: d.name, token: r.token, topic: topicFor(r.id) });
      }
      setConfirm(null);
      devices.reload();
    } catch (err) {
      setConfirmError(err);
    } finally {
      setBusy(false);
    }
  };

  const list = devices.data ?? [];
  return (
    <>
      <h1>{t("devicesTitle")}</h1>

      <section aria-labelledby="h-add">
        <h2 id="h-add">{t("addDevice")}</h2>
        <form className="inline-form" onSubmit={add}>
          <div className="field">
            <label htmlFor="device-name">{t("deviceName")}</label>
            <input
              id="device-name"
              name="device-name"
              maxLength={64}
              required
              value={name}
              onChange={(e) => setName(e.target.value)}
              aria-invalid={addError ? true : undefined}
              aria-describedby={addError ? "add-error" : undefined}
            />
          </div>
          <button type="submit" className="btn-primary" disabled={busy}>
            {t("add")}
          </button>
        </form>
        <ErrorText error={addError} id="add-error" />
      </section>

      <section aria-labelledby="h-list">
        <h2 id="h-list">{t("devices")}</h2>
        <ErrorText error={devices.error} />
        {devices.data && list.length === 0 && <p>{t("noDevices")}</p>}
        <ul className="device-list">
          {list.map((d) => (
            <li key={d.id} className={d.revoked_ms !== null ? "card device revoked" : "card device"}>
              <h3>{d.name}</h3>
              <dl className="kv">
                <dt>{t("id")}</dt>
                <dd>
                  <code>{d.id}</code>
                </dd>
                <dt>{t("created")}</dt>
                <dd>{f.date(d.created_ms)}</dd>
                <dt>{t("lastSeen")}</dt>
                <dd>{d.last_seen_ms !== null ? <span title={f.date(d.last_seen_ms, "datetimesec")}>{f.ago(d.last_seen_ms, now)}</span> : t("never")}</dd>
                <dt>{t("messagesLastHour")}</dt>
                <dd>{f.num(d.messages_last_hour)}</dd>
                <dt>{t("status")}</dt>
                <dd>{d.revoked_ms !== null ? t("revokedOn", { date: f.date(d.revoked_ms) }) : t("active")}</dd>
              </dl>
              {d.revoked_ms === null && (
                <div className="actions">
                  <button type="button" onClick={() => (setConfirmError(null), setConfirm({ kind: "rotate", device: d }))} aria-label={`${t("rotate")} – ${d.name}`}>
                    {t("rotate")}
                  </button>
                  <button type="button" className="btn-danger" onClick={() => (setConfirmError(null), setConfirm({ kind: "revoke", device: d }))} aria-label={`${t("revoke")} – ${d.name}`}>
                    {t("revoke")}
                  </button>
                </div>
              )}
            </li>
          ))}
        </ul>
      </section>

      <section aria-labelledby="h-dead">
        <h2 id="h-dead">{t("deadLetters")}</h2>
        <p className="muted">{t("deadLettersIntro")}</p>
        <ErrorText error={dead.error} />
        {dead.data && dead.data.length === 0 && <p>{t("noDeadLetters")}</p>}
        {dead.data && dead.data.length > 0 && (
          <ul className="dead-list">
            {dead.data.map((d, i) => (
              <li key={`${d.device}-${d.message_id}-${i}`} className="card">
                <dl className="kv">
                  <dt>{t("time")}</dt>
                  <dd>{f.date(d.received_ms, "datetimesec")}</dd>
                  <dt>{t("device")}</dt>
                  <dd>
                    <code>{d.device}</code>
                  </dd>
                  <dt>{t("topic")}</dt>
                  <dd>
                    <code>{d.topic}</code>
                  </dd>
                  <dt>{t("reason")}</dt>
                  <dd>{d.reason}</dd>
                </dl>
              </li>
            ))}
          </ul>
        )}
      </section>

      {confirm && (
        <Dialog
          title={confirm.kind === "revoke" ? t("confirmRevokeTitle", { name: confirm.device.name }) : t("confirmRotateTitle", { name: confirm.device.name })}
          onClose={() => setConfirm(null)}
          closeLabel={t("close")}
        >
          <p>{confirm.kind === "revoke" ? t("confirmRevokeBody") : t("confirmRotateBody")}</p>
          <ErrorText error={confirmError} />
          <div className="dialog-actions">
            <button type="button" onClick={() => setConfirm(null)}>
              {t("cancel")}
            </button>
            <button type="button" className={confirm.kind === "revoke" ? "btn-danger" : "btn-primary"} onClick={doConfirm} disabled={busy}>
              {confirm.kind === "revoke" ? t("revoke") : t("rotate")}
            </button>
          </div>
        </Dialog>
      )}
      {cred && <TokenPanel cred={cred} info={info.data} onClose={() => setCred(null)} />}
    </>
  );
}
