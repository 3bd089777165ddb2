import type { ActivitySegment } from "../../api/types";
import { useFormat, useT, type Key } from "../../i18n";
import { ACTIVITIES, layoutTimeline, minutesByActivity } from "../../lib/timeline";

function activityKey(a: string): Key {
  return (ACTIVITIES as readonly string[]).includes(a) ? (`act_${a}` as Key) : "act_other";
}

function colorClass(a: string): string {
  const i = (ACTIVITIES as readonly string[]).indexOf(a);
  return i < 0 ? "act-other" : `act-${i}`;
}

export function ActivityTimeline({ segments, dayStart, dayEnd }: { segments: ActivitySegment[]; dayStart: number; dayEnd: number }) {
  const t = useT();
  const f = useFormat();
  const laid = layoutTimeline(segments, dayStart, dayEnd);
  if (laid.length === 0) return <p>{t("activityNothing")}</p>;
  const totals = minutesByActivity(laid);
  const ticks = [0, 6, 12, 18, 24];
  return (
    <div className="timeline-wrap">
      <div className="timeline" role="img" aria-label={t("activityTimelineLabel")}>
        {laid.map((s, i) => (
          <span
            key={i}
            className={`seg ${colorClass(s.activity)}`}
            style={{ left: `${s.leftPct}%`, width: `max(${s.widthPct}%, 2px)` }}
            title={t("activityItem", { activity: t(activityKey(s.activity)), start: f.date(s.start, "time"), end: f.date(s.end, "time") })}
          />
        ))}
      </div>
      <div className="timeline-ticks" aria-hidden="true">
        {ticks.map((h) => (
          <span key={h} style={{ left: `${(h / 24) * 100}%` }}>
            {f.num(h)}
          </span>
        ))}
      </div>
      <h3 className="visually-hidden">{t("activityLegend")}</h3>
      <ul className="legend">
        {totals.map(([a, min]) => (
          <li key={a}>
            <span className={`swatch ${colorClass(a)}`} aria-hidden="true" />
            {t(activityKey(a))} — {min < 0.5 ? t("minutesUnderOne") : t("minutesShort", { n: f.num(Math.round(min)) })}
          </li>
        ))}
      </ul>
      <details>
        <summary>{t("activityAsText")}</summary>
        <ul>
          {laid.map((s, i) => (
            <li key={i}>
              {t("activityItem", { activity: t(activityKey(s.activity)), start: f.date(s.start, "time"), end: f.date(s.end, "time") })}
            </li>
          ))}
        </ul>
      </details>
    </div>
  );
}
