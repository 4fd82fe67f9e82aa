//! Report plots (plotters, PNG and SVG): Pareto fronts, hypervolume per generation, per-layer
//! memory of one arch, and the FLOPs CDFs of search-space optimisation.
//!
//! Text is drawn with DejaVu Sans compiled into the binary (`assets/fonts`, Bitstream Vera
//! licence), so plots look the same on machines without fonts.

use crate::search::Search;
use crate::search::objectives::{Budget, Objective};
use crate::search::output::{Measured, RunInfo};
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

/// The legend box every plot uses: translucent white, grey border.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    font_size: u32,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .label_font((FAMILY, font_size))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .position(position)
        .draw()?;
    Ok(())
}

fn register_fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
            // The bundled font is valid; a failure would only lose text, never the plot.
            let _ = plotters::style::register_font(FAMILY, style, FONT);
        }
    });
}

/// Colours (colour-blind safe, Okabe-Ito).
const BLUE: RGBColor = RGBColor(0, 114, 178);
const ORANGE: RGBColor = RGBColor(230, 159, 0);
const VERMILLION: RGBColor = RGBColor(213, 94, 0);
const GREEN: RGBColor = RGBColor(0, 158, 115);
const PURPLE: RGBColor = RGBColor(204, 121, 167);
const SKY: RGBColor = RGBColor(86, 180, 233);
const GREY: RGBColor = RGBColor(120, 120, 120);
/// Series palette.
pub const PALETTE: [RGBColor; 8] = [BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, RGBColor(240, 228, 66), RGBColor(0, 0, 0)];

/// Draw `draw` into `stem.png` and `stem.svg`; returns both paths.
fn render(stem: &Path, size: (u32, u32), draw: &dyn Fn(Canvas) -> Result<()>) -> Result<Vec<PathBuf>> {
    register_fonts();
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw(Canvas::Png(root)).with_context(|| format!("drawing {}", png.display()))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw(Canvas::Svg(root)).with_context(|| format!("drawing {}", svg.display()))?;
    }
    Ok(vec![png, svg])
}

/// A drawing area on either backend.
enum Canvas<'a> {
    Png(DrawingArea<BitMapBackend<'a>, Shift>),
    Svg(DrawingArea<SVGBackend<'a>, Shift>),
}

macro_rules! on_canvas {
    ($canvas:expr, |$root:ident| $body:block) => {
        match $canvas {
            Canvas::Png(area) => {
                let $root = &area;
                let drawn: Result<()> = (|| $body)();
                drawn?;
                area.present()?;
            }
            Canvas::Svg(area) => {
                let $root = &area;
                let drawn: Result<()> = (|| $body)();
                drawn?;
                area.present()?;
            }
        }
    };
}

/// One archive row, as the plots need it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunPoint {
    /// Predicted top-1 (fraction).
    pub acc_predicted: Option<f64>,
    /// Measured top-1 (fraction).
    pub acc_measured: Option<f64>,
    /// Latency estimate, ms.
    pub latency_ms: f64,
    /// Peak SRAM, bytes.
    pub sram: u64,
    /// Flash, bytes.
    pub flash: u64,
    /// MACs.
    pub macs: u64,
    /// Within budget.
    pub feasible: bool,
    /// In the Pareto set.
    pub is_pareto: bool,
}

/// Everything the run plots show.
#[derive(Debug, Clone)]
pub struct RunPlotData {
    /// Space name.
    pub space: String,
    /// Board name.
    pub board: String,
    /// Every archive row.
    pub points: Vec<RunPoint>,
    /// Budgets.
    pub budget: Budget,
    /// Objectives searched.
    pub objectives: Vec<Objective>,
    /// Hypervolume after each generation.
    pub hypervolume: Vec<f64>,
    /// Where the latencies come from, in a few words (the latency axis says it).
    pub latency_label: String,
}

impl RunPlotData {
    /// From a search in memory.
    pub fn from_search(search: &Search, pareto: &[usize], measured: &Measured, info: &RunInfo) -> Self {
        let front: std::collections::HashSet<usize> = pareto.iter().copied().collect();
        RunPlotData {
            space: search.eval.space.name.clone(),
            board: info.board.clone(),
            latency_label: info.latency_short.clone(),
            points: search
                .archive
                .records
                .iter()
                .enumerate()
                .map(|(i, r)| RunPoint {
                    acc_predicted: r.metrics.acc_predicted,
                    acc_measured: measured.get(&i).copied(),
                    latency_ms: r.metrics.latency_ms,
                    sram: r.metrics.sram,
                    flash: r.metrics.flash,
                    macs: r.metrics.macs,
                    feasible: r.feasible,
                    is_pareto: front.contains(&i),
                })
                .collect(),
            budget: search.eval.budget,
            objectives: search.eval.objectives.clone(),
            hypervolume: search.hypervolume.clone(),
        }
    }

    /// From a run folder written by `nas search` (`archive.parquet`, `pareto.json`,
    /// `hypervolume.csv`).
    pub fn load(dir: &Path) -> Result<Self> {
        use polars::prelude::*;
        let pj = dir.join("pareto.json");
        let meta: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&pj)
                .with_context(|| format!("reading {} (is {} a `nas search` run folder?)", pj.display(), dir.display()))?,
        )
        .with_context(|| format!("parsing {}", pj.display()))?;
        crate::run_folder::check_belongs(&pj, meta["run_id"].as_str()).map_err(|e| anyhow::anyhow!(e))?;
        let budget: Budget = serde_json::from_value(meta["budget"].clone()).with_context(|| format!("{}: field budget", pj.display()))?;
        let objectives: Vec<Objective> =
            serde_json::from_value(meta["objectives"].clone()).with_context(|| format!("{}: field objectives", pj.display()))?;
        let pq = dir.join("archive.parquet");
        let file = std::fs::File::open(&pq).with_context(|| format!("opening {}", pq.display()))?;
        let df = anyhow::Context::with_context(ParquetReader::new(file).finish(), || format!("reading {}", pq.display()))?;
        let f64s = |name: &str| -> Result<Vec<Option<f64>>> { Ok(df.column(name)?.f64()?.iter().collect()) };
        let u64s = |name: &str| -> Result<Vec<u64>> { Ok(df.column(name)?.u64()?.iter().map(|v| v.unwrap_or(0)).collect()) };
        let bools = |name: &str| -> Result<Vec<bool>> { Ok(df.column(name)?.bool()?.iter().map(|v| v.unwrap_or(false)).collect()) };
        let (accp, accm, lat) = (f64s("acc_predicted")?, f64s("acc_measured")?, f64s("latency_ms_estimate")?);
        let (sram, flash, macs) = (u64s("sram")?, u64s("flash")?, u64s("macs")?);
        let (feasible, pareto) = (bools("feasible")?, bools("is_pareto")?);
        let points = (0..df.height())
            .map(|i| RunPoint {
                acc_predicted: accp[i],
                acc_measured: accm[i],
                latency_ms: lat[i].unwrap_or(0.0),
                sram: sram[i],
                flash: flash[i],
                macs: macs[i],
                feasible: feasible[i],
                is_pareto: pareto[i],
            })
            .collect();
        let hv_path = dir.join("hypervolume.csv");
        let hypervolume = std::fs::read_to_string(&hv_path)
            .with_context(|| format!("reading {}", hv_path.display()))?
            .lines()
            .skip(1)
            .filter_map(|l| l.split(',').nth(1).and_then(|v| v.trim().parse().ok()))
            .collect();
        Ok(RunPlotData {
            space: meta["space"].as_str().unwrap_or("?").to_string(),
            // Runs from before the short label recorded only the MACs/cycle estimate's.
            latency_label: meta["latency_short"].as_str().unwrap_or(crate::search::latency::LATENCY_LABEL).to_string(),
            board: meta["board"].as_str().unwrap_or("?").to_string(),
            points,
            budget,
            objectives,
            hypervolume,
        })
    }
}

/// Axis value and label of an objective.
fn axis(o: Objective, p: &RunPoint) -> Option<f64> {
    match o {
        Objective::Acc => p.acc_predicted.map(|a| 100.0 * a),
        Objective::Latency => Some(p.latency_ms),
        Objective::Sram => Some(p.sram as f64 / 1024.0),
        Objective::Flash => Some(p.flash as f64 / 1024.0),
        Objective::Macs => Some(p.macs as f64 / 1e6),
    }
}

fn axis_label(o: Objective, latency: &str) -> String {
    match o {
        Objective::Acc => "top-1 accuracy, predicted (%)".into(),
        Objective::Latency => format!("latency, {latency} (ms)"),
        Objective::Sram => "peak SRAM: arena + runtime (KiB)".into(),
        Objective::Flash => "flash (KiB)".into(),
        Objective::Macs => "MACs (millions)".into(),
    }
}

fn short_name(o: Objective) -> &'static str {
    match o {
        Objective::Acc => "accuracy",
        Objective::Latency => "latency",
        Objective::Sram => "peak SRAM",
        Objective::Flash => "flash",
        Objective::Macs => "MACs",
    }
}

fn title_name(o: Objective) -> &'static str {
    match o {
        Objective::Acc => "Top-1 (predicted)",
        Objective::Latency => "latency (estimate)",
        Objective::Sram => "peak SRAM",
        Objective::Flash => "flash",
        Objective::Macs => "MACs",
    }
}

/// Tick labels with as many decimals as the axis span needs.
fn tick_format(r: &std::ops::Range<f64>) -> impl Fn(&f64) -> String + use<> {
    let span = r.end - r.start;
    let decimals = if span >= 20.0 {
        0
    } else if span >= 2.0 {
        1
    } else if span >= 0.2 {
        2
    } else {
        3
    };
    move |v: &f64| format!("{v:.decimals$}")
}

fn budget_of(o: Objective, b: &Budget) -> Option<(f64, String)> {
    match o {
        Objective::Latency => b.latency_ms.map(|l| (l, format!("latency budget {l} ms"))),
        Objective::Sram => Some((b.sram as f64 / 1024.0, format!("SRAM budget {}", crate::size::Human(b.sram)))),
        Objective::Flash => Some((b.flash as f64 / 1024.0, format!("flash budget {}", crate::size::Human(b.flash)))),
        Objective::Acc | Objective::Macs => None,
    }
}

/// Range with a margin, never empty.
fn padded(lo: f64, hi: f64, from_zero: bool) -> std::ops::Range<f64> {
    let lo = if from_zero { 0.0 } else { lo };
    let span = (hi - lo).abs().max(hi.abs() * 0.05).max(1e-6);
    (lo - if from_zero { 0.0 } else { 0.05 * span })..(hi + 0.08 * span)
}

/// `pts` with at most one point per cell of a `size`-cell grid over `xr` x `yr`: the archive
/// holds tens of thousands of archs, and each drawn circle is an element of the SVG (2 MB per
/// plot before), while overlapping circles add nothing visible beyond their density.
fn thinned(pts: Vec<(f64, f64)>, xr: &std::ops::Range<f64>, yr: &std::ops::Range<f64>, size: (u32, u32)) -> Vec<(f64, f64)> {
    let cell = |v: f64, r: &std::ops::Range<f64>, n: u32| ((v - r.start) / (r.end - r.start) * n as f64).round() as i64;
    let mut seen = std::collections::HashSet::new();
    pts.into_iter().filter(|p| seen.insert((cell(p.0, xr, size.0), cell(p.1, yr, size.1)))).collect()
}

/// `v` on objective `o`'s axis, with its unit.
fn fmt_objective(o: Objective, v: f64) -> String {
    match o {
        Objective::Latency => format!("{v:.1} ms"),
        Objective::Sram | Objective::Flash => format!("{v:.1} KiB"),
        Objective::Acc => format!("{v:.2}%"),
        Objective::Macs => format!("{v:.2} M"),
    }
}

/// The 2-D non-dominated staircase of `pts` (x minimised; y maximised when `y_max`).
fn staircase(mut pts: Vec<(f64, f64)>, y_max: bool) -> Vec<(f64, f64)> {
    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(if y_max { b.1.total_cmp(&a.1) } else { a.1.total_cmp(&b.1) }));
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in pts {
        let better = out.last().is_none_or(|l| if y_max { p.1 > l.1 } else { p.1 < l.1 });
        if better {
            out.push(p);
        }
    }
    let mut steps = Vec::new();
    for (i, p) in out.iter().enumerate() {
        if i > 0 {
            steps.push((p.0, out[i - 1].1));
        }
        steps.push(*p);
    }
    steps
}

/// One scatter: `y` against `x` for the whole feasible archive (faint), the Pareto set
/// (highlighted), measured accuracies, and the budget on x as a dashed line.
pub fn pareto_plot(data: &RunPlotData, x: Objective, y: Objective, stem: &Path) -> Result<Vec<PathBuf>> {
    let pts = |f: &dyn Fn(&RunPoint) -> bool| -> Vec<(f64, f64)> {
        data.points.iter().filter(|p| f(p)).filter_map(|p| Some((axis(x, p)?, axis(y, p)?))).collect()
    };
    let archive = pts(&|p| p.feasible && !p.is_pareto);
    let front = pts(&|p| p.is_pareto);
    let measured: Vec<(f64, f64)> = data
        .points
        .iter()
        .filter(|p| p.is_pareto)
        .filter_map(|p| Some((axis(x, p)?, if y == Objective::Acc { 100.0 * p.acc_measured? } else { return None })))
        .collect();
    let y_max = y == Objective::Acc;
    let stairs = staircase(front.clone(), y_max);
    let budget = budget_of(x, &data.budget);
    let all: Vec<&(f64, f64)> = archive.iter().chain(&front).chain(&measured).collect();
    if all.is_empty() {
        anyhow::bail!("nothing to plot: no feasible archs with {} and {}", x, y);
    }
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for p in &all {
        x0 = x0.min(p.0);
        x1 = x1.max(p.0);
        y0 = y0.min(p.1);
        y1 = y1.max(p.1);
    }
    // A budget far beyond every arch would squeeze the data into a corner: zoom to the data
    // and say in the legend that the budget lies off the scale.
    let budget = budget.map(|(b, label)| {
        if b > 2.0 * x1 { (None, format!("{label}: off scale, every arch at most {}", fmt_objective(x, x1))) } else { (Some(b), label) }
    });
    if let Some((Some(b), _)) = &budget {
        x1 = x1.max(*b);
    }
    let xr = padded(x0, x1, x != Objective::Acc);
    let yr = padded(y0, y1, false);
    // Cells of 3x3 pixels, about the grey circles' size.
    let n_archive = archive.len();
    let archive = thinned(archive, &xr, &yr, (400, 267));
    let title = format!("{} vs {}: {} space on {}", title_name(y), title_name(x), data.space, data.board);
    let n_objectives = data.objectives.len();
    let n_front = front.len();
    let draw = |canvas: Canvas| -> Result<()> {
        on_canvas!(canvas, |root| {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(root)
                .caption(&title, (FAMILY, 26))
                .margin(20)
                .x_label_area_size(55)
                .y_label_area_size(75)
                .build_cartesian_2d(xr.clone(), yr.clone())?;
            let (fx, fy) = (tick_format(&xr), tick_format(&yr));
            chart
                .configure_mesh()
                .x_desc(axis_label(x, &data.latency_label))
                .y_desc(axis_label(y, &data.latency_label))
                .x_label_formatter(&fx)
                .y_label_formatter(&fy)
                .axis_desc_style((FAMILY, 18))
                .label_style((FAMILY, 15))
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(215, 215, 215))
                .draw()?;
            chart
                .draw_series(archive.iter().map(|&p| Circle::new(p, 2, GREY.mix(0.25).filled())))?
                .label(format!("all evaluated archs within budget ({})", n_archive + n_front))
                .legend(|(x, y)| Circle::new((x + 10, y), 3, GREY.mix(0.5).filled()));
            chart
                .draw_series(front.iter().map(|&p| Circle::new(p, 3, BLUE.mix(0.6).filled())))?
                .label(format!("Pareto set over all {} objectives ({n_front})", n_objectives))
                .legend(|(x, y)| Circle::new((x + 10, y), 4, BLUE.filled()));
            chart
                .draw_series(LineSeries::new(stairs.iter().copied(), BLACK.stroke_width(2)))?
                .label(format!("front of {} vs {} alone", short_name(y), short_name(x)))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
            if !measured.is_empty() {
                chart
                    .draw_series(measured.iter().map(|&p| TriangleMarker::new(p, 7, VERMILLION.filled())))?
                    .label("top-1 measured on the supernet")
                    .legend(|(x, y)| TriangleMarker::new((x + 10, y), 6, VERMILLION.filled()));
            }
            if let Some((b, label)) = &budget {
                let line = b.map_or_else(Vec::new, |b| vec![(b, yr.start), (b, yr.end)]);
                chart
                    .draw_series(DashedLineSeries::new(line, 10, 6, VERMILLION.stroke_width(2)))?
                    .label(label.clone())
                    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], VERMILLION.stroke_width(2)));
            }
            draw_legend(&mut chart, 15, if y_max { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight })?;
            Ok(())
        });
        Ok(())
    };
    render(stem, (1200, 800), &draw)
}

/// Hypervolume of the population after each generation.
pub fn hypervolume_plot(data: &RunPlotData, stem: &Path) -> Result<Vec<PathBuf>> {
    let hv: Vec<(f64, f64)> = data.hypervolume.iter().enumerate().map(|(g, h)| (g as f64, *h)).collect();
    if hv.is_empty() {
        anyhow::bail!("no hypervolume recorded");
    }
    let (lo, hi) = hv.iter().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
    let xr = 0.0..(hv.len().max(2) - 1) as f64;
    let yr = padded(lo, hi, false);
    let objs = data.objectives.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ");
    let title = format!("Hypervolume per generation: {} on {} ({objs})", data.space, data.board);
    let draw = |canvas: Canvas| -> Result<()> {
        on_canvas!(canvas, |root| {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(root)
                .caption(&title, (FAMILY, 24))
                .margin(20)
                .x_label_area_size(55)
                .y_label_area_size(80)
                .build_cartesian_2d(xr.clone(), yr.clone())?;
            chart
                .configure_mesh()
                .x_desc("generation")
                .x_label_formatter(&|v| format!("{v:.0}"))
                .y_desc("hypervolume (normalised objectives)")
                .axis_desc_style((FAMILY, 18))
                .label_style((FAMILY, 15))
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(215, 215, 215))
                .y_label_formatter(&|v| format!("{v:.3}"))
                .draw()?;
            chart
                .draw_series(LineSeries::new(hv.iter().copied(), BLUE.stroke_width(3)))?
                .label("population hypervolume; reference: top-1 0, each cost at its budget")
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(3)));
            draw_legend(&mut chart, 15, SeriesLabelPosition::LowerRight)?;
            Ok(())
        });
        Ok(())
    };
    render(stem, (1200, 700), &draw)
}

/// The front plots of a run: accuracy (or the first objective) against every other objective,
/// and the hypervolume curve. Returns the files written.
pub fn run_plots(data: &RunPlotData, dir: &Path) -> Result<Vec<PathBuf>> {
    let y = if data.objectives.contains(&Objective::Acc) { Objective::Acc } else { data.objectives[0] };
    let mut files = Vec::new();
    for &x in data.objectives.iter().filter(|&&o| o != y) {
        files.extend(pareto_plot(data, x, y, &dir.join(format!("pareto_{}_vs_{}", y.name(), x.name())))?);
    }
    files.extend(hypervolume_plot(data, &dir.join("hypervolume"))?);
    Ok(files)
}

/// [`run_plots`] for a search that just finished.
pub fn search_plots(search: &Search, pareto: &[usize], measured: &Measured, info: &RunInfo, dir: &Path) -> Result<Vec<PathBuf>> {
    run_plots(&RunPlotData::from_search(search, pareto, measured, info), dir)
}

/// The macro-structure group of a layer name: `stem`, `first`, `s0`..`sN`, `head`.
fn layer_group(name: &str) -> &str {
    name.split('.').next().unwrap_or(name)
}

/// Per-layer live SRAM (top) and flash (bottom) of one arch, layers in execution order, with
/// the stages marked.
pub fn layers_plot(
    arch: &crate::arch::Arch,
    space: &crate::space::SearchSpace,
    sram_budget: Option<u64>,
    stem: &Path,
) -> Result<Vec<PathBuf>> {
    let rows = crate::search::output::layer_rows(arch, space);
    let n = rows.len();
    let kib = |b: u64| b as f64 / 1024.0;
    let peak = rows.iter().map(|r| r.live_sram).max().unwrap_or(0);
    let flash_total: u64 = rows.iter().map(|r| r.flash).sum();
    let sram_top = kib(peak.max(sram_budget.unwrap_or(0))) * 1.15;
    let flash_top = kib(rows.iter().map(|r| r.flash).max().unwrap_or(1)) * 1.2;
    // Runs of consecutive layers in the same group: (name, first, last).
    let mut groups: Vec<(String, usize, usize)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let g = layer_group(&r.name);
        match groups.last_mut() {
            Some(last) if last.0 == g => last.2 = i,
            _ => groups.push((g.to_string(), i, i)),
        }
    }
    let title = format!(
        "Per-layer memory: {} W{} R{} depths {} (peak live {:.1} KiB, constants {:.1} KiB)",
        space.name,
        arch.width_mult,
        arch.resolution,
        arch.depths().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("-"),
        kib(peak),
        kib(flash_total)
    );
    let colour = |op: &str| match op {
        "depthwise" => ORANGE,
        "pointwise" => BLUE,
        "conv" => GREEN,
        "add" => PURPLE,
        "avgpool" => SKY,
        _ => GREY,
    };
    let xr = -0.6..(n as f64 - 0.4);
    let draw = |canvas: Canvas| -> Result<()> {
        on_canvas!(canvas, |root| {
            root.fill(&WHITE)?;
            let root = root.titled(&title, (FAMILY, 24))?;
            let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 / 2);
            for (panel, area) in [(0, &top), (1, &bottom)] {
                let ymax = if panel == 0 { sram_top } else { flash_top };
                let mut chart = ChartBuilder::on(area)
                    .margin(15)
                    .x_label_area_size(if panel == 1 { 50 } else { 35 })
                    .y_label_area_size(85)
                    .build_cartesian_2d(xr.clone(), 0.0..ymax)?;
                let fy = tick_format(&(0.0..ymax));
                chart
                    .configure_mesh()
                    .disable_x_mesh()
                    .y_desc(if panel == 0 { "live arena buffers (KiB)" } else { "flash constants (KiB)" })
                    .x_desc(if panel == 1 { "layer index (execution order)" } else { "" })
                    .axis_desc_style((FAMILY, 16))
                    .label_style((FAMILY, 14))
                    .light_line_style(WHITE)
                    .bold_line_style(RGBColor(225, 225, 225))
                    .x_labels(n.div_ceil(5).clamp(2, 30))
                    .x_label_formatter(&|v| if *v >= 0.0 { format!("{v:.0}") } else { String::new() })
                    .y_label_formatter(&fy)
                    .draw()?;
                // Stage separators and names.
                for (k, (g, first, last)) in groups.iter().enumerate() {
                    if k > 0 {
                        let x = *first as f64 - 0.5;
                        chart.draw_series(LineSeries::new(vec![(x, 0.0), (x, ymax)], RGBColor(170, 170, 170).stroke_width(1)))?;
                    }
                    let centre = (*first + *last) as f64 / 2.0;
                    chart.draw_series(std::iter::once(Text::new(
                        g.clone(),
                        (centre, ymax * 0.97),
                        (FAMILY, 14).into_font().color(&RGBColor(90, 90, 90)).pos(Pos::new(HPos::Center, VPos::Top)),
                    )))?;
                }
                for op in ["conv", "pointwise", "depthwise", "add", "avgpool", "fc"] {
                    let bars: Vec<_> = rows
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.op.trim_end_matches("-inplace") == op)
                        .map(|(i, r)| {
                            let v = kib(if panel == 0 { r.live_sram } else { r.flash });
                            Rectangle::new([(i as f64 - 0.4, 0.0), (i as f64 + 0.4, v)], colour(op).filled())
                        })
                        .collect();
                    if bars.is_empty() {
                        continue;
                    }
                    let s = chart.draw_series(bars)?;
                    if panel == 0 {
                        s.label(op).legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour(op).filled()));
                    }
                }
                if panel == 0 {
                    let mut marks = vec![(kib(peak), format!("peak live {:.1} KiB", kib(peak)), BLACK)];
                    if let Some(b) = sram_budget {
                        marks.push((kib(b), format!("SRAM budget {}", crate::size::Human(b)), VERMILLION));
                    }
                    for (v, l, c) in marks {
                        chart
                            .draw_series(DashedLineSeries::new(vec![(xr.start, v), (xr.end, v)], 10, 6, c.stroke_width(2)))?
                            .label(l)
                            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
                    }
                    draw_legend(&mut chart, 14, SeriesLabelPosition::MiddleRight)?;
                }
            }
            Ok(())
        });
        Ok(())
    };
    render(stem, (1500, 1000), &draw)
}

/// One curve of a CDF plot.
#[derive(Debug, Clone)]
pub struct CdfSeries {
    /// Legend label.
    pub label: String,
    /// Sample values (any order).
    pub values: Vec<f64>,
    /// Drawn thicker.
    pub highlight: bool,
}

/// Empirical CDFs of `series` (e.g. MFLOPs of the feasible subnets of each width x resolution).
pub fn cdf_plot(series: &[CdfSeries], title: &str, x_desc: &str, stem: &Path) -> Result<Vec<PathBuf>> {
    let all: Vec<f64> = series.iter().flat_map(|s| s.values.iter().copied()).collect();
    if all.is_empty() {
        anyhow::bail!("nothing to plot: every series is empty");
    }
    let (lo, hi) = all.iter().fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    let xr = padded(lo, hi, true);
    type Curve = (String, Vec<(f64, f64)>, bool);
    let curves: Vec<Curve> = series
        .iter()
        .filter(|s| !s.values.is_empty())
        .map(|s| {
            let mut v = s.values.clone();
            v.sort_by(f64::total_cmp);
            let n = v.len() as f64;
            let mut pts = vec![(v[0], 0.0)];
            for (i, x) in v.iter().enumerate() {
                pts.push((*x, i as f64 / n));
                pts.push((*x, (i + 1) as f64 / n));
            }
            (s.label.clone(), pts, s.highlight)
        })
        .collect();
    let draw = |canvas: Canvas| -> Result<()> {
        on_canvas!(canvas, |root| {
            root.fill(&WHITE)?;
            let mut chart = ChartBuilder::on(root)
                .caption(title, (FAMILY, 24))
                .margin(20)
                .x_label_area_size(55)
                .y_label_area_size(75)
                .build_cartesian_2d(xr.clone(), 0.0..1.02)?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .y_desc("fraction of feasible subnets (CDF)")
                .axis_desc_style((FAMILY, 18))
                .label_style((FAMILY, 15))
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(215, 215, 215))
                .draw()?;
            for (i, (label, pts, hl)) in curves.iter().enumerate() {
                let c = PALETTE[i % PALETTE.len()];
                let w = if *hl { 4 } else { 2 };
                chart
                    .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(w)))?
                    .label(label.clone())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(w)));
            }
            draw_legend(&mut chart, 14, SeriesLabelPosition::LowerRight)?;
            Ok(())
        });
        Ok(())
    };
    render(stem, (1200, 800), &draw)
}

/// Training curves of a run folder's `metrics.csv` (supernet or fine-tuning run): training
/// loss and validation top-1 per epoch, side by side, as `curves.png` / `curves.svg` in `dir`.
pub fn training_curves(metrics: &Path, dir: &Path) -> Result<Vec<PathBuf>> {
    training_curves_of(&[(String::new(), metrics.to_path_buf())], &dir.join("curves"))
}

/// Named curves: (name, (epoch, value) points).
type Series = Vec<(String, Vec<(f64, f64)>)>;

/// The series of one `metrics.csv`: training losses (all-zero ones left out) and validation
/// top-1 in percent, each named by its column and prefixed with `label` when there is one; and
/// the last epoch recorded.
fn curve_series(label: &str, metrics: &Path) -> Result<(Series, Series, f64)> {
    let text = std::fs::read_to_string(metrics).with_context(|| format!("reading {}", metrics.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let epoch =
        col("epoch").with_context(|| format!("{}: no `epoch` column (expected a training run's metrics.csv)", metrics.display()))?;
    let loss_cols: Vec<usize> = header.iter().enumerate().filter(|(_, h)| h.starts_with("train_loss")).map(|(i, _)| i).collect();
    let val_cols: Vec<usize> = header.iter().enumerate().filter(|(_, h)| h.starts_with("val_top1")).map(|(i, _)| i).collect();
    let rows: Vec<Vec<f64>> = lines.map(|l| l.split(',').map(|v| v.parse().unwrap_or(f64::NAN)).collect()).collect();
    if rows.is_empty() {
        anyhow::bail!("{}: no epochs recorded yet", metrics.display());
    }
    let series = |c: usize, scale: f64| -> Vec<(f64, f64)> {
        rows.iter().filter(|r| r.len() == header.len() && r[c].is_finite()).map(|r| (r[epoch], scale * r[c])).collect()
    };
    let name = |c: usize, from: &str, to: &str| {
        let n = header[c].replace(from, to).replace('_', " ");
        if label.is_empty() { n } else { format!("{label}: {n}") }
    };
    // A loss that is zero throughout (no distillation) would only flatten the axis.
    let losses: Series = loss_cols
        .iter()
        .map(|&c| (name(c, "train_loss", "training loss"), series(c, 1.0)))
        .filter(|(_, p)| p.iter().any(|q| q.1 != 0.0))
        .collect();
    let vals: Series = val_cols.iter().map(|&c| (name(c, "val_top1", "validation top-1"), series(c, 100.0))).collect();
    let last = rows.iter().filter_map(|r| r.get(epoch)).fold(1.0f64, |m, &e| m.max(e));
    Ok((losses, vals, last))
}

/// `nas plot curves`: the curves of the runs `runs` (run folders of `nas train` / `nas
/// finetune`, or their `metrics.csv` files) in one figure at `out` (a path without extension)
/// [default: RUN/curves for one run, ./curves for several], each run's series named by its
/// folder when there are several. Returns the files written.
pub fn run_curves(runs: &[PathBuf], out: Option<&Path>) -> Result<Vec<PathBuf>> {
    let metrics_of = |run: &Path| -> (String, PathBuf) {
        let (dir, file) = if run.is_dir() {
            (run.to_path_buf(), run.join("metrics.csv"))
        } else {
            (run.parent().unwrap_or(run).to_path_buf(), run.to_path_buf())
        };
        let name = std::fs::canonicalize(&dir).ok().and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
        (name.unwrap_or_else(|| dir.display().to_string()), file)
    };
    let mut named: Vec<(String, PathBuf)> = runs.iter().map(|r| metrics_of(r)).collect();
    if named.len() == 1 {
        named[0].0.clear();
    }
    let stem = match (out, named.as_slice()) {
        (Some(o), _) => o.to_path_buf(),
        (None, [(_, file)]) => file.with_file_name("curves"),
        (None, _) => PathBuf::from("curves"),
    };
    if let Some(parent) = stem.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    training_curves_of(&named, &stem)
}

/// Training curves of several runs in one figure (`stem`.png / .svg), each run's series named
/// by its label: training loss and validation top-1 per epoch, side by side.
pub fn training_curves_of(runs: &[(String, PathBuf)], stem: &Path) -> Result<Vec<PathBuf>> {
    let (mut losses, mut vals, mut last) = (Series::new(), Series::new(), 1.0f64);
    for (label, metrics) in runs {
        let (l, v, e) = curve_series(label, metrics)?;
        losses.extend(l);
        vals.extend(v);
        last = last.max(e);
    }
    let xr = 0.5..last + 0.5;
    let range = |s: &[(String, Vec<(f64, f64)>)]| {
        let (lo, hi) = s.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)).fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
        if lo > hi { 0.0..1.0 } else { padded(lo, hi, false) }
    };
    let (loss_r, val_r) = (range(&losses), range(&vals));
    let draw = |canvas: Canvas| -> Result<()> {
        on_canvas!(canvas, |root| {
            root.fill(&WHITE)?;
            let (left, right) = root.split_horizontally(700);
            for (area, data, yr, ydesc, title, legend) in [
                (&left, &losses, &loss_r, "loss (cross-entropy, nats)", "Training loss per epoch", SeriesLabelPosition::UpperRight),
                (&right, &vals, &val_r, "top-1 (%)", "Validation top-1 per epoch (BN recalibrated)", SeriesLabelPosition::LowerRight),
            ] {
                let mut chart = ChartBuilder::on(area)
                    .caption(title, (FAMILY, 22))
                    .margin(20)
                    .x_label_area_size(50)
                    .y_label_area_size(70)
                    .build_cartesian_2d(xr.clone(), yr.clone())?;
                chart
                    .configure_mesh()
                    .x_desc("epoch")
                    // Whole epochs only: fractional ticks would repeat the rounded number.
                    .x_label_formatter(&|v| if (v - v.round()).abs() < 1e-6 { format!("{v:.0}") } else { String::new() })
                    .y_desc(ydesc)
                    .axis_desc_style((FAMILY, 17))
                    .label_style((FAMILY, 14))
                    .light_line_style(WHITE)
                    .bold_line_style(RGBColor(215, 215, 215))
                    .y_label_formatter(&|v| format!("{v:.2}"))
                    .draw()?;
                for (i, (name, pts)) in data.iter().enumerate() {
                    let c = PALETTE[i % PALETTE.len()];
                    chart
                        .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(3)))?
                        .label(name.as_str())
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(3)));
                    chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
                }
                draw_legend(&mut chart, 14, legend)?;
            }
            Ok(())
        });
        Ok(())
    };
    render(stem, (1400, 600), &draw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staircase_keeps_the_2d_front() {
        let s = staircase(vec![(1.0, 50.0), (2.0, 40.0), (3.0, 60.0), (4.0, 55.0)], true);
        assert_eq!(s, vec![(1.0, 50.0), (3.0, 50.0), (3.0, 60.0)]);
        let s = staircase(vec![(1.0, 5.0), (2.0, 3.0), (3.0, 4.0)], false);
        assert_eq!(s, vec![(1.0, 5.0), (2.0, 5.0), (2.0, 3.0)]);
    }

    #[test]
    fn thinning_keeps_one_point_per_pixel() {
        // 0..100 over 100 pixels: 1000 points 0.01 apart collapse to about one per pixel.
        let pts: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64 * 0.01, 5.0)).collect();
        let t = thinned(pts, &(0.0..100.0), &(0.0..10.0), (100, 10));
        assert!((10..=12).contains(&t.len()), "{}", t.len());
        let far = thinned(vec![(1.0, 1.0), (50.0, 1.0), (1.0, 9.0)], &(0.0..100.0), &(0.0..10.0), (100, 10));
        assert_eq!(far.len(), 3);
    }

    #[test]
    fn layers_plot_writes_png_and_svg() {
        let space = crate::space::resolve("cifar").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let files = layers_plot(&crate::arch::Arch::largest(&space), &space, Some(256 << 10), &dir.path().join("layers")).unwrap();
        assert_eq!(files.len(), 2);
        for f in files {
            assert!(std::fs::metadata(&f).unwrap().len() > 1000, "{}", f.display());
        }
    }
}
