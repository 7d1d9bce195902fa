//! Small charts for reports (line charts with optional log axes, bar
//! charts): SVG through plotters, PNG through resvg.
//!
//! The SVG string is the primary product (the HTML report embeds it inline);
//! the PNG is a convenience for viewers that cannot show SVG. PNG text needs a
//! font: system fonts are loaded once through resvg's font database, and on a
//! machine without any font the PNG is still written, only without text (the
//! SVG is unaffected because browsers resolve `sans-serif` themselves).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{anyhow, Context, Result};
use plotters::coord::ranged1d::{AsRangedCoord, SegmentValue, ValueFormatter};
use plotters::prelude::*;

/// Pixel size of every chart; 800×500 reads well inline in a report page.
const CHART_SIZE: (u32, u32) = (800, 500);

/// Colour-blind-safe palette (Okabe–Ito), cycled by series position or `color`.
const PALETTE: [RGBColor; 8] = [
    RGBColor(0, 114, 178),
    RGBColor(213, 94, 0),
    RGBColor(0, 158, 115),
    RGBColor(204, 121, 167),
    RGBColor(230, 159, 0),
    RGBColor(86, 180, 233),
    RGBColor(0, 0, 0),
    RGBColor(240, 228, 66),
];

/// How one series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesStyle {
    /// A solid line through the points in order.
    Line,
    /// A dashed line: used for predictions drawn next to simulated points.
    Dashed,
    /// A filled circle per point, no line.
    Markers,
    /// A solid line with a circle on every point.
    LineAndMarkers,
    /// A translucent filled area, e.g. a confidence band: the points trace its
    /// outline (the upper edge left to right, then the lower edge back). It has no
    /// legend entry; the line it belongs to has.
    Band,
}

/// One named curve of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub style: SeriesStyle,
    /// Palette index; `None` takes the series' position in the chart, so that
    /// a simulated series and its prediction can share a colour on purpose.
    pub color: Option<usize>,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>, style: SeriesStyle) -> Self {
        Series { name: name.into(), points, style, color: None }
    }

    pub fn line(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series::new(name, points, SeriesStyle::Line)
    }

    pub fn dashed(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series::new(name, points, SeriesStyle::Dashed)
    }

    pub fn markers(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series::new(name, points, SeriesStyle::Markers)
    }

    pub fn with_color(mut self, palette_index: usize) -> Self {
        self.color = Some(palette_index);
        self
    }
}

/// A line chart with optional logarithmic axes and a legend.
///
/// On a logarithmic axis, points with a non-positive coordinate are left out
/// (they have no position there); non-finite points are always left out.
#[derive(Clone, Debug, Default)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub series: Vec<Series>,
}

/// Renders the chart as a standalone SVG document.
pub fn render_svg(chart: &LineChart) -> Result<String> {
    let visible: Vec<Series> = chart
        .series
        .iter()
        .map(|series| Series {
            points: series
                .points
                .iter()
                .copied()
                .filter(|&(x, y)| drawable(x, chart.log_x) && drawable(y, chart.log_y))
                .collect(),
            ..series.clone()
        })
        .collect();
    let x_range = axis_range(visible.iter().flat_map(|s| s.points.iter().map(|p| p.0)), chart.log_x);
    let y_range = axis_range(visible.iter().flat_map(|s| s.points.iter().map(|p| p.1)), chart.log_y);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        // Each axis kind is a different coordinate type in plotters, so the
        // four combinations are spelled out once here and share one body.
        match (chart.log_x, chart.log_y) {
            (false, false) => draw_chart(&root, chart, &visible, x_range, y_range)?,
            (true, false) => draw_chart(&root, chart, &visible, x_range.log_scale(), y_range)?,
            (false, true) => draw_chart(&root, chart, &visible, x_range, y_range.log_scale())?,
            (true, true) => draw_chart(&root, chart, &visible, x_range.log_scale(), y_range.log_scale())?,
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn drawable(value: f64, log_axis: bool) -> bool {
    value.is_finite() && (!log_axis || value > 0.0)
}

/// The data's extent with a margin, or a unit range when there is no data.
fn axis_range(values: impl Iterator<Item = f64>, log_axis: bool) -> std::ops::Range<f64> {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return if log_axis { 1.0..10.0 } else { 0.0..1.0 };
    }
    if log_axis {
        // Multiplicative margin; a flat series still gets a decade around it.
        let (lo, hi) = if hi / lo < 1.0001 { (lo / 3.0, hi * 3.0) } else { (lo, hi) };
        let pad = (hi / lo).powf(0.03);
        (lo / pad)..(hi * pad)
    } else {
        let span = if hi - lo > 1e-12 * hi.abs().max(1.0) { hi - lo } else { hi.abs().max(1.0) };
        (lo - 0.04 * span)..(hi + 0.04 * span)
    }
}

fn draw_chart<DB, X, Y>(
    root: &DrawingArea<DB, plotters::coord::Shift>,
    chart: &LineChart,
    visible: &[Series],
    x_range: X,
    y_range: Y,
) -> Result<()>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let mut context = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, y_range)
        .map_err(plot_error)?;
    // An x axis whose every point is a whole number over a short span counts whole
    // things (generations): its ticks fall on whole numbers only.
    let xs = || visible.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (lo, hi) = xs().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| (lo.min(x), hi.max(x)));
    let whole = !chart.log_x && lo.is_finite() && hi - lo <= 40.0 && xs().all(|x| x == x.round());
    let whole_ticks = if whole { ((hi - lo).round() as usize + 1).clamp(2, 21) } else { 10 };
    let x_label = move |v: &f64| {
        if whole && (v - v.round()).abs() > 1e-9 {
            String::new()
        } else {
            tick_label(*v)
        }
    };
    context
        .configure_mesh()
        .x_labels(whole_ticks)
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_label_formatter(&x_label)
        .y_label_formatter(&|v| tick_label(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        // Only the labelled grid lines: plotters' minor lines on a log axis
        // bunch up into grey bands.
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(plot_error)?;

    for (position, series) in visible.iter().enumerate() {
        let color = PALETTE[series.color.unwrap_or(position) % PALETTE.len()];
        if series.style == SeriesStyle::Band {
            if series.points.len() >= 3 {
                context
                    .draw_series(std::iter::once(Polygon::new(series.points.clone(), color.mix(0.18).filled())))
                    .map_err(plot_error)?;
            }
            continue;
        }
        let line_style = ShapeStyle::from(&color).stroke_width(2);
        let points = series.points.clone();
        let annotation = match series.style {
            SeriesStyle::Line => context.draw_series(LineSeries::new(points, line_style)),
            SeriesStyle::Dashed => context.draw_series(DashedLineSeries::new(points, 6, 4, line_style)),
            SeriesStyle::Markers => context.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled()))),
            SeriesStyle::LineAndMarkers => {
                context.draw_series(LineSeries::new(points.clone(), line_style)).map_err(plot_error)?;
                context.draw_series(points.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            }
            SeriesStyle::Band => unreachable!("bands are drawn above without a legend entry"),
        }
        .map_err(plot_error)?;
        // The legend sample repeats the series' own stroke and marker.
        let annotation = annotation.label(series.name.as_str());
        match series.style {
            SeriesStyle::Line => {
                annotation.legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], line_style))
            }
            SeriesStyle::Dashed => annotation.legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (7, 0)], line_style)
                    + PathElement::new(vec![(12, 0), (20, 0)], line_style)
            }),
            SeriesStyle::Markers => {
                annotation.legend(move |(x, y)| EmptyElement::at((x + 10, y)) + Circle::new((0, 0), 3, color.filled()))
            }
            SeriesStyle::LineAndMarkers => annotation.legend(move |(x, y)| {
                EmptyElement::at((x, y))
                    + PathElement::new(vec![(0, 0), (20, 0)], line_style)
                    + Circle::new((10, 0), 3, color.filled())
            }),
            SeriesStyle::Band => unreachable!("bands are drawn above without a legend entry"),
        };
    }

    if !visible.is_empty() {
        context
            .configure_series_labels()
            .position(emptiest_corner(visible, chart.log_x, chart.log_y))
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .draw()
            .map_err(plot_error)?;
    }
    Ok(())
}

/// The corner whose quarter of the plot holds the fewest data points, so
/// that the legend hides as little as possible (upper right on ties).
fn emptiest_corner(series: &[Series], log_x: bool, log_y: bool) -> SeriesLabelPosition {
    let scale = |value: f64, log_axis: bool| if log_axis { value.ln() } else { value };
    let points: Vec<(f64, f64)> =
        series.iter().flat_map(|s| s.points.iter().map(|&(x, y)| (scale(x, log_x), scale(y, log_y)))).collect();
    let extent = |values: &mut dyn Iterator<Item = f64>| {
        values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
    };
    let (x_lo, x_hi) = extent(&mut points.iter().map(|p| p.0));
    let (y_lo, y_hi) = extent(&mut points.iter().map(|p| p.1));
    let fraction = |value: f64, lo: f64, hi: f64| if hi > lo { (value - lo) / (hi - lo) } else { 0.5 };
    // (is right, is upper) per corner, in order of preference.
    let corners = [
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ];
    let crowding = |right: bool, upper: bool| {
        points
            .iter()
            .filter(|&&(x, y)| {
                let (fx, fy) = (fraction(x, x_lo, x_hi), fraction(y, y_lo, y_hi));
                (if right { fx > 0.6 } else { fx < 0.4 }) && (if upper { fy > 0.6 } else { fy < 0.4 })
            })
            .count()
    };
    let mut best = (SeriesLabelPosition::UpperRight, usize::MAX);
    for (position, right, upper) in corners {
        let count = crowding(right, upper);
        if count < best.1 {
            best = (position, count);
        }
    }
    best.0
}

/// Bars over named categories, e.g. vanished tokens per frequency bucket.
/// On a logarithmic value axis, bars with a non-positive value are left out.
#[derive(Clone, Debug, Default)]
pub struct BarChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    /// (category name, value), drawn left to right.
    pub bars: Vec<(String, f64)>,
}

/// Renders the bar chart as a standalone SVG document.
pub fn render_bar_svg(chart: &BarChart) -> Result<String> {
    let values = chart.bars.iter().map(|(_, value)| *value).filter(|&v| drawable(v, chart.log_y));
    // Bars rise from 0, or from below the smallest bar on a log axis.
    let y_range = axis_range(values.chain(if chart.log_y { None } else { Some(0.0) }), chart.log_y);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        if chart.log_y {
            draw_bars(&root, chart, y_range.log_scale())?;
        } else {
            draw_bars(&root, chart, y_range)?;
        }
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

fn draw_bars<DB, Y>(root: &DrawingArea<DB, plotters::coord::Shift>, chart: &BarChart, y_range: Y) -> Result<()>
where
    DB: DrawingBackend,
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    let count = chart.bars.len().max(1);
    let mut context = ChartBuilder::on(root)
        .caption(&chart.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(64)
        .build_cartesian_2d((0..count - 1).into_segmented(), y_range) // plotters' int ranges include their end
        .map_err(plot_error)?;
    let base = if chart.log_y { context.y_range().start } else { 0.0 };
    let name = |value: &SegmentValue<usize>| match value {
        SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
            chart.bars.get(*i).map(|b| b.0.clone()).unwrap_or_default()
        }
        SegmentValue::Last => String::new(),
    };
    context
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(chart.x_label.as_str())
        .y_desc(chart.y_label.as_str())
        .x_labels(count.min(20))
        .x_label_formatter(&name)
        .y_label_formatter(&|v| tick_label(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .draw()
        .map_err(plot_error)?;
    let fill = PALETTE[0].filled();
    context
        .draw_series(chart.bars.iter().enumerate().filter(|(_, (_, v))| drawable(*v, chart.log_y)).map(
            |(i, (_, value))| {
                let mut bar =
                    Rectangle::new([(SegmentValue::Exact(i), base), (SegmentValue::Exact(i + 1), *value)], fill);
                bar.set_margin(0, 0, 6, 6);
                bar
            },
        ))
        .map_err(plot_error)?;
    Ok(())
}

/// Compact tick text: plain decimals in the readable range, scientific outside it.
fn tick_label(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        "0".to_string()
    } else if !(1e-3..1e5).contains(&magnitude) {
        // Ticks are usually round: "1e-4", not "1.0e-4"; long mantissas are cut.
        let shortest = format!("{value:e}");
        if shortest.len() <= 8 {
            shortest
        } else {
            format!("{value:.2e}")
        }
    } else {
        let text = format!("{value:.4}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        text.to_string()
    }
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the chart failed: {error}")
}

/// Rasterises an SVG document to PNG bytes at its own pixel size.
pub fn render_png(svg: &str) -> Result<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let options = usvg::Options { fontdb: system_fonts(), ..Default::default() };
    let tree = usvg::Tree::from_str(svg, &options).context("parsing the SVG for PNG conversion failed")?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| anyhow!("the SVG has an empty size ({}×{})", size.width(), size.height()))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("encoding the PNG failed")
}

/// The system font database, loaded once per process (a scan takes tens of ms).
///
/// `sans-serif` is pointed at a family that exists here, because fontdb's
/// built-in default (Arial) is absent on most Linux machines.
fn system_fonts() -> Arc<resvg::usvg::fontdb::Database> {
    static FONTS: OnceLock<Arc<resvg::usvg::fontdb::Database>> = OnceLock::new();
    FONTS
        .get_or_init(|| {
            let mut database = resvg::usvg::fontdb::Database::new();
            database.load_system_fonts();
            let families: Vec<String> =
                database.faces().flat_map(|face| face.families.iter().map(|(name, _)| name.clone())).collect();
            let preferred = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "Arial", "Helvetica"];
            let chosen = preferred
                .iter()
                .find(|name| families.iter().any(|family| family == *name))
                .map(|name| name.to_string())
                .or_else(|| families.first().cloned());
            if let Some(family) = chosen {
                database.set_sans_serif_family(family);
            }
            Arc::new(database)
        })
        .clone()
}

/// Writes `PATH.svg` and `PATH.png`, each atomically (temporary name, then rename).
pub fn write_svg_and_png(svg: &str, path_without_ext: &Path) -> Result<()> {
    let png = render_png(svg).with_context(|| format!("rendering {}.png", path_without_ext.display()))?;
    crate::durable::write_atomic(&with_extension(path_without_ext, "svg"), svg.as_bytes())?;
    crate::durable::write_atomic(&with_extension(path_without_ext, "png"), &png)
}

/// Appends an extension without replacing a dot already in the stem
/// (`survival.k10` must become `survival.k10.svg`, not `survival.svg`).
fn with_extension(path: &Path, extension: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}
