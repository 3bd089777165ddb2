import { useMemo } from "react";
import { api } from "../../api/client";
import type { SummaryItem } from "../../api/types";
import { useApi, useNow } from "../../api/useApi";
import { Sparkline } from "../../charts/Sparkline";
import { ErrorText } from "../../components/ErrorText";
import { useFormat, useT } from "../../i18n";
import { stats } from "../../lib/format";
import { converterFor } from "../../lib/units";
import { Link } from "../../router";
import { usePageTitle } from "../../usePageTitle";
import { ActivityTimeline } from "./ActivityTimeline";
import { fetchSpark, fetchToday, SPARK_WIDTH } from "./data";

function MeasurementCard({ m, now }: { m: SummaryItem; now: number }) {
  const t = useT();
  const f = useFormat();
  // Refresh the sparkline every 5 minutes, not on every clock tick.
  const slot = Math.floor(now / 300_000);
  const spark = useApi((s) => fetchSpark(m.name, Date.now(), s), [m.name, slot]);
  const conv = converterFor(m.unit, f.units, m.latest_value ?? 0);
  const c = (v: number | null) => (v === null ? null : conv.convert(v));
  const sd = spark.data;
  const st = sd ? stats(sd.mean, sd.count) : null;
  const label = st
    ? t("sparkSummary", {
        name: m.name,
        min: f.num(c(Math.min(...sd!.min.filter((v): v is number => v !== null)))!),
        mean: f.num(conv.convert(st.mean)),
        max: f.num(c(Math.max(...sd!.max.filter((v): v is number => v !== null)))!),
      })
    : t("sparkEmpty");
  return (
    <li className="card measure">
      <h3>
        <Link href={`/explore?m=${encodeURIComponent(m.name)}`}>{m.name}</Link>
      </h3>
      <p className="big-value">
        {m.latest_value !== null ? f.value(m.latest_value, m.unit) : "–"}
      </p>
      <p className="muted">
        {m.latest_time_ms !== null ? (
          <time dateTime={new Date(m.latest_time_ms).toISOString()} title={f.date(m.latest_time_ms, "datetimesec")}>
            {f.ago(m.latest_time_ms, now)}
          </time>
        ) : (
          t("never")
        )}
      </p>
      {sd ? (
        <Sparkline
          times={sd.x}
          mean={sd.mean.map(c)}
          min={sd.min.map(c)}
          max={sd.max.map(c)}
          from={sd.from}
          to={sd.to}
          width={SPARK_WIDTH}
          label={label}
        />
      ) : (
        <div className="sparkline-placeholder" />
      )}
      <ErrorText error={spark.error} />
    </li>
  );
}

export function OverviewPage() {
  const t = useT();
  const f = useFormat();
  usePageTitle(t("overviewTitle"));
  const now = useNow(30_000);
  const summary = useApi((s) => api.summary(s), []);
  const devices = useApi((s) => api.devices(s), []);
  const daySlot = Math.floor(now / 300_000);
  const today = useApi((s) => fetchToday(Date.now(), f.tz, s), [f.tz, daySlot]);
  const activeDevices = useMemo(() => (devices.data ?? []).filter((d) => d.revoked_ms === null), [devices.data]);

  return (
    <>
      <h1>{t("overviewTitle")}</h1>
      <section aria-labelledby="h-measure">
        <h2 id="h-measure">{t("measurements")}</h2>
        <ErrorText error={summary.error} />
        {summary.data && summary.data.length === 0 && <p>{t("noMeasurements")}</p>}
        {!summary.data && summary.loading && <p>{t("loading")}</p>}
        <ul className="cards">
          {(summary.data ?? []).map((m) => (
            <MeasurementCard key={m.name} m={m} now={now} />
          ))}
        </ul>
      </section>

      <section aria-labelledby="h-devices">
        <h2 id="h-devices">{t("devices")}</h2>
        <ErrorText error={devices.error} />
        {devices.data && activeDevices.length === 0 && (
          <p>
            {t("noDevices")} <Link href="/devices">{t("addDevice")}</Link>
          </p>
        )}
        <ul className="cards device-cards">
          {activeDevices.map((d) => (
            <li key={d.id} className="card">
              <h3>{d.name}</h3>
              <dl className="kv">
                <dt>{t("lastSeen")}</dt>
                <dd>
                  {d.last_seen_ms !== null ? (
                    <time dateTime={new Date(d.last_seen_ms).toISOString()} title={f.date(d.last_seen_ms, "datetimesec")}>
                      {f.ago(d.last_seen_ms, now)}
                    </time>
                  ) : (
                    t("never")
                  )}
                </dd>
                <dt>{t("messagesLastHour")}</dt>
                <dd>{f.num(d.messages_last_hour)}</dd>
              </dl>
            </li>
          ))}
        </ul>
      </section>

      <section aria-labelledby="h-activity">
        <h2 id="h-activity">{t("activityToday")}</h2>
        <ErrorText error={today.error} />
        {today.data && <ActivityTimeline {...today.data} />}
      </section>
    </>
  );
}
