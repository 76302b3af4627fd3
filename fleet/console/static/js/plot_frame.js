// What every chart of the console shares: a uPlot that keeps to its holder's width, and a
// time axis labelled in local time. Nothing here fetches data or decides what is drawn.

const MIN_WIDTH = 280;

/** "14:00" within a day ("07-01" at midnight), "07-01" for steps of a day or more. */
export function timeLabel(epochSeconds, step) {
  const d = new Date(epochSeconds * 1000);
  const pad = (n) => String(n).padStart(2, "0");
  const day = `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  if (step >= 86400 || (d.getHours() === 0 && d.getMinutes() === 0)) return day;
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** uPlot's x axis with `timeLabel`. */
export const TIME_AXIS = { values: (_u, splits, _axis, _space, incr) => splits.map((v) => timeLabel(v, incr)) };

/**
 * A uPlot of `data` in `holder`, `height` tall, as wide as the holder (or `fallback`'s
 * width before layout) and following it; its destroy() also stops following.
 */
export function fittedPlot(options, data, holder, height, fallback) {
  const width = Math.max(MIN_WIDTH, holder.clientWidth || fallback?.clientWidth || 600);
  const plot = new window.uPlot({ ...options, width, height }, data, holder);
  const resize = new ResizeObserver(() => {
    const now = Math.max(MIN_WIDTH, holder.clientWidth);
    if (now !== plot.width) plot.setSize({ width: now, height });
  });
  resize.observe(holder);
  const destroy = plot.destroy.bind(plot);
  plot.destroy = () => {
    resize.disconnect();
    destroy();
  };
  return plot;
}
