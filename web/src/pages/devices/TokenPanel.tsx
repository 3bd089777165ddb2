import { useEffect, useState } from "react";
import type { Info } from "../../api/types";
import { CopyButton } from "../../components/CopyButton";
import { Dialog } from "../../components/Dialog";
import { useT } from "../../i18n";
import { mosquittoSnippet, mqttJsSnippet, mqttTarget, qrPayload, type Credentials } from "./data";

/** The new token, shown once, with ready-to-paste snippets and a QR code. */
export function TokenPanel({ cred, info, onClose }: { cred: Credentials; info: Info | undefined; onClose: () => void }) {
  const t = useT();
  const { host, port } = mqttTarget(info);
  const [qr, setQr] = useState<string | null>(null);
  const mosq = mosquittoSnippet(cred, host, port);
  const js = mqttJsSnippet(cred, host, port);

  useEffect(() => {
    let live = true;
    // qrcode is loaded on demand: it is not part of the first-load JS.
    import("qrcode")
      .then((QRCode) => QRCode.toString(qrPayload(cred, host, port), { type: "svg", margin: 2, errorCorrectionLevel: "M", color: { dark: "#000000", light: "#ffffff" } }))
      .then((svg) => live && setQr("data:image/svg+xml;charset=utf-8," + encodeURIComponent(svg)))
      .catch(() => live && setQr(null));
    return () => {
      live = false;
    };
  }, [cred, host, port]);

  const row = (label: string, value: string, testid?: string) => (
    <div className="cred-row">
      <dt>{label}</dt>
      <dd>
        <code data-testid={testid}>{value}</code>
        <CopyButton text={value} what={label} />
      </dd>
    </div>
  );

  return (
    <Dialog title={t("tokenTitle", { name: cred.name })} onClose={onClose} closeLabel={t("close")} className="token-dialog">
      <p className="warning">{t("tokenOnce")}</p>
      <div className="token-layout">
        <dl className="creds">
          {row(t("id"), cred.id, "new-device-id")}
          {row(t("token"), cred.token, "new-device-token")}
          {row(t("topic"), cred.topic)}
          {row(t("host"), host)}
          {row(t("port"), String(port))}
        </dl>
        <div className="qr">{qr && <img src={qr} width={180} height={180} alt={t("qrAlt", { name: cred.name })} />}</div>
      </div>
      <h3>{t("snippetMosquitto")}</h3>
      <pre className="snippet" tabIndex={0} aria-label={t("snippetMosquitto")}>
        <code>{mosq}</code>
      </pre>
      <CopyButton text={mosq} what={t("snippetMosquitto")} />
      <h3>{t("snippetMqttJs")}</h3>
      <pre className="snippet" tabIndex={0} aria-label={t("snippetMqttJs")}>
        <code>{js}</code>
      </pre>
      <CopyButton text={js} what={t("snippetMqttJs")} />
      <div className="dialog-actions">
        <button type="button" className="btn-primary" onClick={onClose}>
          {t("close")}
        </button>
      </div>
    </Dialog>
  );
}
