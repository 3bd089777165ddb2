import { useEffect, useRef, useState } from "react";
import { api } from "../../api/client";
import { useApi } from "../../api/useApi";
import { probeSession } from "../../api/session";
import { LiveChart } from "../../charts/LiveChart";
import { useFormat, useT } from "../../i18n";
import { usePageTitle } from "../../usePageTitle";
import { LiveStore, MAX_CHARTS } from "./stream";

type Conn = "connecting" | "connected" | "reconnecting";

export function LivePage() {
  const t = useT();
  const f = useFormat();
  usePageTitle(t("liveTitle"));
  const store = useRef(new LiveStore()).current;
  const [conn, setConn] = useState<Conn>("connecting");
  const [, setFrame] = useState(0);
  // Events carry the device's id; the person knows it by the name they gave it.
  const devices = useApi((signal) => api.devices(signal), []);
  const nameOf = (id: string) => devices.data?.find((d) => d.id === id)?.name ?? id;

  useEffect(() => {
    let es: EventSource | null = null;
    let raf = 0;
    let retry = 0;
    let closed = false;
    const ac = new AbortController();

    // Events only fill buffers; React redraws at most once per animation frame.
    const schedule = () => {
      if (raf) return;
      raf = requestAnimationFrame(() => {
        raf = 0;
        setFrame((n) => n + 1);
      });
    };

    const open = () => {
      if (closed) return;
      es = new EventSource(api.liveUrl);
      es.onopen = () => setConn("connected");
      es.onmessage = (e: MessageEvent<string>) => {
        if (store.ingest(e.data, e.lastEventId) || store.lastReceivedMs !== null) schedule();
      };
      es.onerror = () => {
        if (!es) return;
        if (es.readyState === EventSource.CONNECTING) {
          // The browser reconnects by itself and sends Last-Event-ID.
          setConn("reconnecting");
          return;
        }
        // Closed for good (e.g. 401): check the session (which asks the person
        // to sign in again if needed), then open a new stream.
        setConn("reconnecting");
        es.close();
        es = null;
        void probeSession(ac.signal).finally(() => {
          if (!closed) retry = window.setTimeout(open, 2000);
        });
      };
    };
    open();
    return () => {
      closed = true;
      ac.abort();
      es?.close();
      cancelAnimationFrame(raf);
      clearTimeout(retry);
    };
  }, [store]);

  const all = [...store.series.values()];
  const charted = all.slice(0, MAX_CHARTS);
  const connText = conn === "connected" ? t("connConnected") : conn === "reconnecting" ? t("connReconnecting") : t("connConnecting");

  return (
    <div className="live" data-testid="live" data-last-received-ms={store.lastReceivedMs ?? undefined} data-conn={conn}>
      <h1>{t("liveTitle")}</h1>
      <p role="status" className={`conn conn-${conn}`}>
        <span className="dot" aria-hidden="true" />
        {t("connState")}: {connText}
      </p>
      {all.length === 0 && <p>{t("liveWaiting")}</p>}
      {all.length > MAX_CHARTS && <p className="muted">{t("liveSeriesLimit", { n: MAX_CHARTS })}</p>}
      <ul className="cards live-grid">
        {charted.map((s) => {
          const last = s.buf.last();
          return (
            <li key={s.key} className="card">
              <h2 className="h3">
                {s.name} <span className="muted">· {nameOf(s.device)}</span>
              </h2>
              <p className="big-value">
                <span className="visually-hidden">{t("liveLastValue")}: </span>
                <span data-testid={`live-value-${s.device}-${s.name}`} data-value={last?.value}>
                  {last ? f.value(last.value, s.unit) : "–"}
                </span>
              </p>
              <LiveChart getData={s.data} version={s.version} lang={f.lang} tz={f.tz} />
            </li>
          );
        })}
      </ul>
      {all.length > MAX_CHARTS && (
        <ul className="live-more">
          {all.slice(MAX_CHARTS).map((s) => {
            const last = s.buf.last();
            return (
              <li key={s.key}>
                {s.name} · {nameOf(s.device)}:{" "}
                <span data-testid={`live-value-${s.device}-${s.name}`} data-value={last?.value}>
                  {last ? f.value(last.value, s.unit) : "–"}
                </span>
              </li>
            );
          })}
        </ul>
      )}
    </div>
  );
}
