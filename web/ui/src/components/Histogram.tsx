// Counts over time stacked by severity (D3); dragging across the chart zooms to that range.
import { useEffect, useRef, useState } from 'react';
import { axisBottom, axisLeft } from 'd3-axis';
import { brushX } from 'd3-brush';
import { scaleLinear, scaleTime } from 'd3-scale';
import { select } from 'd3-selection';
import { stack } from 'd3-shape';
import { timeFormat } from 'd3-time-format';
import type { HistogramResult } from '../types';

export const LEVEL_ORDER = ['FATAL', 'ERROR', 'WARN', 'INFO', 'DEBUG', 'TRACE', 'UNKNOWN'];

interface Props {
  data: HistogramResult;
  onZoom: (startMs: number, endMs: number) => void;
  height?: number;
}

/** 24-hour tick labels fitted to the span shown. */
export function tickFormat(spanMs: number): (d: Date) => string {
  if (spanMs > 2 * 86_400_000) return timeFormat('%b %d');
  if (spanMs > 86_400_000) return timeFormat('%b %d %H:%M');
  if (spanMs > 10 * 60_000) return timeFormat('%H:%M');
  return timeFormat('%H:%M:%S');
}

type Row = Record<string, number> & { t: number };

export function Histogram({ data, onZoom, height = 140 }: Props) {
  const svg = useRef<SVGSVGElement>(null);
  const [width, setWidth] = useState(800);

  useEffect(() => {
    const node = svg.current?.parentElement;
    if (!node) return;
    const observer = new ResizeObserver(() => setWidth(Math.max(300, node.clientWidth)));
    observer.observe(node);
    setWidth(Math.max(300, node.clientWidth));
    return () => observer.disconnect();
  }, []);

  useEffect(() => {
    if (!svg.current) return;
    const margin = { top: 8, right: 12, bottom: 22, left: 44 };
    const w = width - margin.left - margin.right;
    const h = height - margin.top - margin.bottom;
    const step = data.interval_seconds * 1000;
    const levels = LEVEL_ORDER.filter((l) => data.buckets.some((b) => b.levels[l])).reverse();
    const rows: Row[] = data.buckets.map((b) => ({ t: Date.parse(b.time), ...b.levels }) as Row);
    const x = scaleTime().domain([Date.parse(data.since), Date.parse(data.until)]).range([0, w]);
    const maxY = Math.max(1, ...data.buckets.map((b) => b.count));
    const y = scaleLinear().domain([0, maxY]).nice().range([h, 0]);
    const series = stack<Row>()
      .keys(levels)
      .value((d, key) => d[key] ?? 0)(rows);

    const root = select(svg.current);
    root.selectAll('*').remove();
    const g = root.append('g').attr('transform', `translate(${margin.left},${margin.top})`);
    const clip = `hclip-${Math.random().toString(36).slice(2)}`;
    g.append('clipPath').attr('id', clip).append('rect').attr('width', w).attr('height', h);
    g.append('g').attr('class', 'axis').attr('transform', `translate(0,${h})`).call(
        axisBottom(x)
          .ticks(Math.max(2, Math.floor(w / 110)))
          .tickFormat((d) => tickFormat(+x.domain()[1] - +x.domain()[0])(d as Date)),
      );
    g.append('g').attr('class', 'axis').call(axisLeft(y).ticks(Math.min(4, maxY)).tickFormat((v) => String(v)));
    const barWidth = (t: number) => Math.max(1, x(t + step) - x(t) - 1);
    g.selectAll('g.layer')
      .data(series)
      .join('g')
      .attr('class', 'layer')
      .attr('clip-path', `url(#${clip})`)
      .style('fill', (s) => `var(--lvl-${s.key.toLowerCase()})`)
      .selectAll('rect')
      .data((s) => s)
      .join('rect')
      .attr('x', (d) => x(d.data.t))
      .attr('width', (d) => barWidth(d.data.t))
      .attr('y', (d) => y(d[1]))
      .attr('height', (d) => Math.max(0, y(d[0]) - y(d[1])))
      .append('title')
      .text((d) => `${new Date(d.data.t).toLocaleString()}: ${d[1] - d[0]}`);

    const brush = brushX()
      .extent([
        [0, 0],
        [w, h],
      ])
      .on('end', (event) => {
        const sel = event.selection as [number, number] | null;
        if (!sel || !event.sourceEvent) return;
        g.select<SVGGElement>('g.brush').call(brush.move, null);
        if (sel[1] - sel[0] < 3) return;
        onZoom(x.invert(sel[0]).getTime(), x.invert(sel[1]).getTime());
      });
    g.append('g').attr('class', 'brush').call(brush);
  }, [data, width, height, onZoom]);

  const levels = LEVEL_ORDER.filter((l) => data.buckets.some((b) => b.levels[l]));
  return (
    <figure className="histogram">
      <svg
        ref={svg}
        width={width}
        height={height}
        role="img"
        aria-label={`Histogram: ${data.total} events, ${data.interval_seconds}s buckets; drag across it to zoom in`}
        data-testid="histogram"
      />
      <figcaption className="legend">
        {levels.map((l) => (
          <span key={l}>
            <i style={{ background: `var(--lvl-${l.toLowerCase()})` }} aria-hidden="true" /> {l}
          </span>
        ))}
        <span className="hint">Drag across the chart to zoom in</span>
      </figcaption>
    </figure>
  );
}
