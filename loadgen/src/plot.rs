//! `plot`: draws the README's SVG plots from the CSV rows the scenarios append.
//!
//! - `latency-vs-rate.svg`: `dm` p50 and p99 against the send rate, one line per label.
//! - `memory-vs-sockets.svg`: `idle` server RSS per socket against open sockets.
//! - `fanout-vs-members.svg`: `fanout` p99 per recipient and until the last recipient,
//!   against the group size.
//!
//! With `--versus`, the shared bench's `results.tsv` (`../shared/bench/run.sh`: one generator
//! against Switchboard and the Socket.IO peer in one sitting) also gives
//! `versus-latency-vs-rate.svg` and `versus-fanout-vs-members.svg`, a line per server.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

/// One CSV row, by column name.
type Row = BTreeMap<String, String>;

/// A named line of (x, y) points.
struct Line {
    name: String,
    points: Vec<(f64, f64)>,
}

/// One SVG file.
struct Chart {
    file: &'static str,
    title: &'static str,
    axes: (&'static str, &'static str),
    log: bool,
    lines: Vec<Line>,
}

pub fn run(csv: &Path, versus: Option<&Path>, out: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(csv).map_err(|err| format!("{}: {err}", csv.display()))?;
    let rows = parse(&text);
    std::fs::create_dir_all(out).map_err(|err| format!("{}: {err}", out.display()))?;
    // Latencies span three orders of magnitude between the databases: a log scale shows both.
    let mut charts = vec![
        Chart {
            file: "latency-vs-rate.svg",
            title: "dm: POST→frame latency against send rate",
            axes: ("messages/s", "ms (log)"),
            log: true,
            lines: latency_lines(&rows),
        },
        Chart {
            file: "memory-vs-sockets.svg",
            title: "idle: server RSS per open socket",
            axes: ("open sockets", "KB per socket"),
            log: false,
            lines: lines_per_label(&rows, "idle", "sockets", &[("KB per socket", "kb_per_socket")]),
        },
        Chart {
            file: "fanout-vs-members.svg",
            title: "fanout at 20 msgs/s against group size",
            axes: ("group members", "ms (log)"),
            log: true,
            lines: fanout_lines(&rows),
        },
    ];
    if let Some(tsv) = versus {
        let text = std::fs::read_to_string(tsv).map_err(|err| format!("{}: {err}", tsv.display()))?;
        let rows = parse_bench_tsv(&text);
        charts.push(Chart {
            file: "versus-latency-vs-rate.svg",
            title: "dm, against the Socket.IO peer: POST→frame latency",
            axes: ("messages/s", "ms (log)"),
            log: true,
            lines: latency_lines(&rows),
        });
        charts.push(Chart {
            file: "versus-fanout-vs-members.svg",
            title: "fanout at 20 msgs/s, against the Socket.IO peer",
            axes: ("group members", "ms (log)"),
            log: true,
            lines: fanout_lines(&rows),
        });
    }
    for chart in charts {
        let lines: Vec<Line> = chart.lines.into_iter().filter(|line| !line.points.is_empty()).collect();
        if lines.is_empty() {
            eprintln!("{}: no rows for it", chart.file);
            continue;
        }
        let path = out.join(chart.file);
        draw(&path, chart.title, chart.axes, chart.log, &lines)
            .map_err(|err| format!("{}: {err}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// `dm` p50 and p99 against the send rate, per label.
fn latency_lines(rows: &[Row]) -> Vec<Line> {
    lines_per_label(rows, "dm", "rate", &[("p50", "p50_ms"), ("p99", "p99_ms")])
}

/// `fanout` p99 per recipient and until the last one against the group size, per label.
fn fanout_lines(rows: &[Row]) -> Vec<Line> {
    lines_per_label(
        rows,
        "fanout",
        "members",
        &[("p99 per recipient", "p99_ms"), ("p99 until the last", "all_p99_ms")],
    )
}

/// For each label of `scenario`, one line per `(name, y column)` against `x`.
fn lines_per_label(rows: &[Row], scenario: &str, x: &str, ys: &[(&str, &str)]) -> Vec<Line> {
    let mut lines = Vec::new();
    for (label, rows) in by_label(rows, scenario) {
        for (name, y) in ys {
            lines.push(line(&format!("{label} {name}"), &rows, x, y));
        }
    }
    lines
}

fn parse(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return Vec::new() };
    let names: Vec<&str> = header.split(',').collect();
    lines
        .map(|line| {
            let mut row: Row = names
                .iter()
                .zip(line.split(','))
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            // `params` holds `key=value` pairs, e.g. `users=1000 rate=500`.
            let params = row.get("params").cloned().unwrap_or_default();
            for pair in params.split_whitespace() {
                if let Some((key, value)) = pair.split_once('=') {
                    row.insert(key.to_string(), value.to_string());
                }
            }
            row
        })
        .collect()
}

/// The shared bench's rows (`date target scenario params figures`, the last two `key=value`
/// lists) in this module's names, one label per server; two-instance runs are left out.
fn parse_bench_tsv(text: &str) -> Vec<Row> {
    let renames =
        [("lat_p50", "p50_ms"), ("p99", "p99_ms"), ("complete_p99", "all_p99_ms"), ("group_size", "members")];
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [_, target, scenario, params, figures] = fields[..] else { return None };
            let label = match target {
                "ours" => "Switchboard",
                "socketio" => "Socket.IO peer",
                _ => return None,
            };
            let mut row = Row::new();
            row.insert("scenario".into(), scenario.to_string());
            row.insert("label".into(), label.to_string());
            for pair in params.split_whitespace().chain(figures.split_whitespace()) {
                if let Some((key, value)) = pair.split_once('=') {
                    let key = renames.iter().find(|(from, _)| *from == key).map_or(key, |(_, to)| to);
                    row.insert(key.to_string(), value.to_string());
                }
            }
            (row.get("instances").is_none_or(|n| n == "1")).then_some(row)
        })
        .collect()
}

fn by_label<'a>(rows: &'a [Row], scenario: &str) -> BTreeMap<String, Vec<&'a Row>> {
    let mut labels: BTreeMap<String, Vec<&Row>> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.get("scenario").is_some_and(|s| s == scenario)) {
        let label =
            row.get("label").filter(|label| !label.is_empty()).cloned().unwrap_or_else(|| "run".into());
        labels.entry(label).or_default().push(row);
    }
    labels
}

fn line(name: &str, rows: &[&Row], x: &str, y: &str) -> Line {
    let number = |row: &Row, key: &str| row.get(key).and_then(|value| value.parse::<f64>().ok());
    let mut points: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|row| Some((number(row, x)?, number(row, y)?)))
        .filter(|(_, y)| y.is_finite())
        .collect();
    points.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Repeated runs at one x (a sitting runs each twice) are drawn as their mean.
    let mut merged: Vec<(f64, f64, f64)> = Vec::new();
    for (x, y) in points {
        match merged.last_mut() {
            Some((last_x, sum, n)) if *last_x == x => {
                *sum += y;
                *n += 1.0;
            }
            _ => merged.push((x, y, 1.0)),
        }
    }
    Line { name: name.to_string(), points: merged.into_iter().map(|(x, sum, n)| (x, sum / n)).collect() }
}

fn draw(path: &Path, title: &str, axes: (&str, &str), log: bool, lines: &[Line]) -> Result<(), String> {
    let all = lines.iter().flat_map(|line| line.points.iter());
    let x_max = (all.clone().map(|p| p.0).fold(0.0, f64::max) * 1.05).max(1.0);
    let y_max = (all.clone().map(|p| p.1).fold(0.0, f64::max) * 1.3).max(1.0);
    let y_min = all.map(|p| p.1).fold(f64::INFINITY, f64::min).max(0.01) / 1.5;
    let root = SVGBackend::new(path, (800, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|err| err.to_string())?;
    let mut builder = ChartBuilder::on(&root);
    builder.caption(title, ("sans-serif", 20)).margin(16).x_label_area_size(44).y_label_area_size(60);
    if log {
        let chart =
            builder.build_cartesian_2d(0.0..x_max, (y_min..y_max).log_scale()).map_err(|e| e.to_string())?;
        series(chart, axes, lines)
    } else {
        let chart = builder.build_cartesian_2d(0.0..x_max, 0.0..y_max).map_err(|e| e.to_string())?;
        series(chart, axes, lines)
    }?;
    root.present().map_err(|err| err.to_string())
}

fn series<'a, Y>(
    mut chart: ChartContext<'a, SVGBackend<'a>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    (x_name, y_name): (&str, &str),
    lines: &[Line],
) -> Result<(), String>
where
    Y: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(x_name)
        .y_desc(y_name)
        .light_line_style(RGBColor(238, 238, 238))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| if *y >= 10.0 { format!("{y:.0}") } else { format!("{y:.1}") })
        .draw()
        .map_err(|err| err.to_string())?;
    for (index, line) in lines.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(line.points.iter().copied(), color.stroke_width(2)))
            .map_err(|err| err.to_string())?
            .label(line.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(line.points.iter().map(|point| Circle::new(*point, 3, color.filled())))
            .map_err(|err| err.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|err| err.to_string())
}
