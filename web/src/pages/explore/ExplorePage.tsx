import { useCallback, useEffect, useMemo, useRef, useState, type KeyboardEvent } from "react";
import { ApiError, api, isAbort } from "../../api/client";
import { useApi } from "../../api/useApi";
import { TimeChart, type ChartSeries } from "../../charts/TimeChart";
import { useWidth } from "../../charts/useWidth";
import { ErrorText } from "../../components/ErrorText";
import { useFormat, useT, type Key } from "../../i18n";
import { stats } from "../../lib/format";
import { chooseBucket, matchingPreset, pan, presetRange, PRESETS, zoom, zoomTo, type Range } from "../../lib/range";
import type { Aligned } from "../../lib/series";
import { converterFor } from "../../lib/units";
import { decodeExplore, encodeExplore, type ExploreState } from "../../lib/urlstate";
import { navigate, useLocation } from "../../router";
import { usePageTitle } from "../../usePageTitle";
import { fetchExplore } from "./data";

const CHART_HEIGHT = 320;

export function ExplorePage() {
  const t = useT();
  const f = useFormat();
  usePageTitle(t("exploreTitle"));
  const { search } = useLocation();
  const state = useMemo(() => decodeExplore(search, Date.now()), [search]);
  const summary = useApi((s) => api.summary(s), []);
  const names = useMemo(() => (summary.data ?? []).map((s) => s.name), [summary.data]);

  const go = useCallback(
    (patch: Partial<ExploreState>, replace = false) => navigate("/explore" + encodeExplore({ ...state, ...patch }), { replace }),
    [state],
  );

  // Write the full view (measurement, from, to) into the URL so a reload or a
  // shared link shows the same thing; no measurement yet → the first one.
  // Replace, not push, so Back is not trapped.
  useEffect(() => {
    const m = state.m ?? names[0] ?? null;
    const canonical = encodeExplore({ ...state, m });
    if (canonical !== search) navigate("/explore" + canonical, { replace: true });
  }, [state, names, search]);

  const box = useRef<HTMLDivElement>(null);
  // 0 until the box is measured: fetching for a guessed width would ask the
  // server for a range twice (and it finishes the first query all the same).
  const width = useWidth(box, 0);
  const bucket = chooseBucket(state.from, state.to, width);
  const chosen = [state.m, state.m2].filter((x): x is string => !!x);
  const key = chosen.join(",");
  // What is on screen is "ready" only when it is the data of this view: after
  // a zoom the chart first redraws the old data at the new range.
  const viewKey = `${key}|${state.from}|${state.to}|${bucket}`;
  const viewKeyRef = useRef(viewKey);
  viewKeyRef.current = viewKey;
  const dataKeyRef = useRef("");

  const [data, setData] = useState<Aligned | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loading, setLoading] = useState(false);

  const setChartState = (s: "loading" | "ready", points?: number) => {
    const el = box.current;
    if (!el) return;
    el.setAttribute("data-state", s);
    if (points !== undefined) el.setAttribute("data-points", String(points));
  };

  // Fetch; a newer range aborts the older request (stale answers never land).
  useEffect(() => {
    if (!key || width === 0) return;
    const ac = new AbortController();
    const fetched = viewKey;
    setLoading(true);
    setChartState("loading");
    fetchExplore(key.split(","), state.from, state.to, bucket, ac.signal).then(
      (d) => {
        if (ac.signal.aborted) return;
        dataKeyRef.current = fetched;
        setData(d);
        setError(null);
        setLoading(false);
        if (d.x.length === 0) setChartState("ready", 0);
      },
      (e: unknown) => {
        if (ac.signal.aborted || isAbort(e)) return;
        setError(e instanceof ApiError ? e : new ApiError(0, "Error", String(e)));
        setLoading(false);
        setChartState("ready", 0);
      },
    );
    return () => ac.abort();
    // viewKey is made of the others.
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, state.from, state.to, bucket, width === 0]);

  const units = f.units;
  const chart = useMemo(() => {
    if (!data) return null;
    const series: ChartSeries[] = [];
    const summaries: { name: string; unit: string; min: number; mean: number; max: number }[] = [];
    for (const s of data.series) {
      const mag = stats(s.max.map((v) => (v === null ? null : Math.abs(v))))?.max ?? 0;
      const c = converterFor(s.unit, units, mag);
      const cv = (v: number | null) => (v === null ? null : c.convert(v));
      const mean = s.mean.map(cv);
      const min = s.min.map(cv);
      const max = s.max.map(cv);
      series.push({ label: s.name, unit: c.unit, mean, min, max });
      const st = stats(mean, s.count);
      const lo = stats(min);
      const hi = stats(max);
      if (st && lo && hi) summaries.push({ name: s.name, unit: c.unit, min: lo.min, mean: st.mean, max: hi.max });
    }
    return { x: data.x, series, summaries };
  }, [data, units]);

  const range: Range = { from: state.from, to: state.to };
  const onZoom = useCallback((a: number, b: number) => go(zoomTo(a, b)), [go]);
  const loadingRef = useRef(loading);
  loadingRef.current = loading;
  const onDrawn = useCallback((n: number) => {
    if (!loadingRef.current && dataKeyRef.current === viewKeyRef.current) setChartState("ready", n);
  }, []);

  const onKey = (e: KeyboardEvent<HTMLDivElement>) => {
    let next: Range | null = null;
    if (e.key === "ArrowLeft") next = pan(range, -1);
    else if (e.key === "ArrowRight") next = pan(range, 1);
    else if (e.key === "-" || e.key === "_") next = zoom(range, 2);
    else if (e.key === "+" || e.key === "=") next = zoom(range, 0.5);
    if (next) {
      e.preventDefault();
      go(next);
    }
  };

  const empty = !!data && data.x.length === 0 && !loading;
  const preset = matchingPreset(range);
  const fromText = f.date(state.from);
  const toText = f.date(state.to);

  return (
    <>
      <h1>{t("exploreTitle")}</h1>
      <ErrorText error={summary.error} />
      {summary.data && names.length === 0 && <p>{t("pickMeasurement")}</p>}
      <div className="explore-controls">
        <div className="field">
          <label htmlFor="m1">{t("measurement")}</label>
          <select id="m1" value={state.m ?? ""} onChange={(e) => go({ m: e.target.value, m2: state.m2 === e.target.value ? null : state.m2 })}>
            {!state.m && <option value="">–</option>}
            {state.m && !names.includes(state.m) && <option value={state.m}>{state.m}</option>}
            {names.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="m2">{t("secondMeasurement")}</label>
          <select id="m2" value={state.m2 ?? ""} onChange={(e) => go({ m2: e.target.value || null })}>
            <option value="">{t("noSecond")}</option>
            {state.m2 && !names.includes(state.m2) && <option value={state.m2}>{state.m2}</option>}
            {names
              .filter((n) => n !== state.m)
              .map((n) => (
                <option key={n} value={n}>
                  {n}
                </option>
              ))}
          </select>
        </div>
      </div>
      <div className="explore-controls">
        <div role="group" aria-label={t("range")} className="btn-group">
          {PRESETS.map((p) => (
            <button
              key={p.key}
              type="button"
              aria-pressed={preset === p.key}
              title={t(`presetLabel_${p.key}` as Key)}
              onClick={() => go(presetRange(p.key, Date.now()))}
            >
              {t(`preset_${p.key}` as Key)}
            </button>
          ))}
        </div>
        <div className="btn-group">
          <button type="button" onClick={() => go(pan(range, -1))}>
            <span aria-hidden="true">← </span>
            {t("panEarlier")}
          </button>
          <button type="button" onClick={() => go(pan(range, 1))}>
            {t("panLater")}
            <span aria-hidden="true"> →</span>
          </button>
          <button type="button" onClick={() => go(zoom(range, 2))}>
            {t("zoomOut")}
          </button>
        </div>
      </div>
      <p className="muted">{t("showingRange", { from: fromText, to: toText })}</p>
      <figure className="chart-figure">
        <div
          ref={box}
          className="chart-box"
          data-testid="explore-chart"
          tabIndex={0}
          role="img"
          aria-label={t("chartLabel", { names: chosen.join(", ") || "–", from: fromText, to: toText })}
          aria-describedby="chart-help chart-summary"
          aria-busy={loading}
          onKeyDown={onKey}
        >
          {chart && (
            <TimeChart
              x={chart.x}
              series={chart.series}
              from={state.from}
              to={state.to}
              width={width}
              height={CHART_HEIGHT}
              lang={f.lang}
              tz={f.tz}
              onZoom={onZoom}
              onDrawn={onDrawn}
            />
          )}
        </div>
        <figcaption>
          <p id="chart-help" className="muted small">
            {t("chartHelp")}
          </p>
          <div id="chart-summary" role="status">
            {empty ? (
              <p className="empty-note">{t("noDataInRange")}</p>
            ) : (
              chart && (
                <ul className="chart-summary">
                  {chart.summaries.map((s, i) => (
                    <li key={s.name}>
                      <span className={`swatch line-${i + 1}`} aria-hidden="true" />
                      {t("rangeSummary", { name: s.name, unit: s.unit || "–", min: f.num(s.min), mean: f.num(s.mean), max: f.num(s.max) })}
                    </li>
                  ))}
                </ul>
              )
            )}
          </div>
        </figcaption>
      </figure>
      <ErrorText error={error} />
    </>
  );
}
