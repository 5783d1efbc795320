// A small D3 line of counts per window.
import { useMemo } from 'react';
import { scaleLinear } from 'd3-scale';
import { area, line } from 'd3-shape';

export function Sparkline({ values, width = 120, height = 28, label }: { values: number[]; width?: number; height?: number; label: string }) {
  const paths = useMemo(() => {
    if (values.length < 2) return null;
    const x = scaleLinear().domain([0, values.length - 1]).range([1, width - 1]);
    const y = scaleLinear().domain([0, Math.max(1, ...values)]).range([height - 2, 2]);
    return {
      line: line<number>().x((_, i) => x(i)).y((v) => y(v))(values) ?? '',
      area: area<number>().x((_, i) => x(i)).y0(height - 1).y1((v) => y(v))(values) ?? '',
    };
  }, [values, width, height]);
  return (
    <svg className="sparkline" width={width} height={height} role="img" aria-label={label}>
      {paths ? (
        <>
          <path d={paths.area} className="spark-area" />
          <path d={paths.line} className="spark-line" />
        </>
      ) : (
        <line x1={0} x2={width} y1={height - 1} y2={height - 1} className="spark-line" />
      )}
    </svg>
  );
}
