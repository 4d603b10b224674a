//! The idle-gap picture: for each S3 hold time, the distribution of every variant's idle gaps
//! as a cumulative curve on a logarithmic time axis, side by side in one SVG. Drawn with
//! plotters' SVG backend, which writes text as SVG `<text>`, so no font is read or needed.

use plotters::element::DashedPathElement;
use plotters::prelude::*;

/// One panel: a title and each variant's idle gaps (ns, ascending).
#[derive(Debug)]
pub(crate) struct Panel<'a> {
    pub(crate) title: String,
    pub(crate) series: Vec<Series<'a>>,
}

/// One variant's curve.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Series<'a> {
    pub(crate) name: &'a str,
    pub(crate) kind: Kind,
    pub(crate) gaps: &'a [u64],
}

/// What a variant is, which sets its colour family: the eye finds the three groups at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// redlease, in blues and greens.
    Ours,
    /// Another lock library, in reds and oranges.
    Peer,
    /// Bare commands, the limits (dashed, black and grey).
    Limit,
}

impl Kind {
    fn colours(self) -> &'static [RGBColor] {
        const OURS: [RGBColor; 5] = [
            RGBColor(0x1f, 0x77, 0xb4),
            RGBColor(0x17, 0xbe, 0xcf),
            RGBColor(0x2c, 0xa0, 0x2c),
            RGBColor(0x00, 0x3f, 0x7f),
            RGBColor(0x98, 0xdf, 0x8a),
        ];
        const PEERS: [RGBColor; 6] = [
            RGBColor(0xd6, 0x27, 0x28),
            RGBColor(0xff, 0x7f, 0x0e),
            RGBColor(0x8c, 0x56, 0x4b),
            RGBColor(0xe3, 0x77, 0xc2),
            RGBColor(0xbc, 0xbd, 0x22),
            RGBColor(0x94, 0x67, 0xbd),
        ];
        const LIMITS: [RGBColor; 2] = [RGBColor(0, 0, 0), RGBColor(0x88, 0x88, 0x88)];
        match self {
            Self::Ours => &OURS,
            Self::Peer => &PEERS,
            Self::Limit => &LIMITS,
        }
    }
}

/// Size of one panel, in pixels.
const PANEL: (u32, u32) = (720, 560);
/// Most points drawn per curve: enough for a smooth curve, few enough for a small file.
const CURVE_POINTS: usize = 400;
/// The shortest gap the axis shows (ms); shorter ones are drawn at it.
const SHORTEST_MS: f64 = 0.001;
/// Dash and space of a limit's curve, in pixels.
const DASH: (u32, u32) = (6, 4);

/// Each variant's colour: by kind, in order of first appearance, the same in every panel.
fn colours<'a>(panels: &[Panel<'a>]) -> Vec<(&'a str, RGBColor)> {
    let mut assigned: Vec<(&str, Kind, RGBColor)> = Vec::new();
    for series in panels.iter().flat_map(|p| &p.series) {
        if assigned.iter().any(|(n, _, _)| *n == series.name) {
            continue;
        }
        let palette = series.kind.colours();
        let used = assigned
            .iter()
            .filter(|(_, k, _)| *k == series.kind)
            .count();
        assigned.push((series.name, series.kind, palette[used % palette.len()]));
    }
    assigned.into_iter().map(|(n, _, c)| (n, c)).collect()
}

/// The SVG document, or why it could not be drawn.
pub(crate) fn idle_gaps(panels: &[Panel<'_>]) -> Result<String, String> {
    let (shortest, longest) = axis_range(panels);
    let colours = colours(panels);
    let mut svg = String::new();
    {
        let width = PANEL.0 * u32::try_from(panels.len().max(1)).unwrap_or(1);
        let root = SVGBackend::with_string(&mut svg, (width, PANEL.1)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let areas = root.split_evenly((1, panels.len().max(1)));
        for (panel, area) in panels.iter().zip(&areas) {
            let mut chart = ChartBuilder::on(area)
                .caption(&panel.title, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(44)
                .y_label_area_size(56)
                // A hair wider than the decades, so that both ends get their labels.
                .build_cartesian_2d((shortest * 0.999..longest * 1.001).log_scale(), 0.0..1.0)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("idle gap, ms (log scale)")
                .y_desc("share of handoffs with a shorter gap")
                .x_label_formatter(&|v| tick(*v))
                .y_label_formatter(&|v| format!("{:.0}%", v * 100.0))
                .light_line_style(BLACK.mix(0.05))
                .draw()
                .map_err(|e| e.to_string())?;
            for series in &panel.series {
                let colour = colours
                    .iter()
                    .find(|(n, _)| *n == series.name)
                    .map_or(BLACK, |(_, c)| *c);
                let style = colour.stroke_width(2);
                let points = cdf(series.gaps, CURVE_POINTS)
                    .into_iter()
                    .map(|(ms, share)| (ms.max(shortest), share));
                let legend = move |(x, y): (i32, i32)| vec![(x, y), (x + 20, y)];
                if series.kind == Kind::Limit {
                    chart
                        .draw_series(DashedLineSeries::new(points, DASH.0, DASH.1, style))
                        .map_err(|e| e.to_string())?
                        .label(series.name)
                        .legend(move |p| DashedPathElement::new(legend(p), DASH.0, DASH.1, style));
                } else {
                    chart
                        .draw_series(LineSeries::new(points, style))
                        .map_err(|e| e.to_string())?
                        .label(series.name)
                        .legend(move |p| PathElement::new(legend(p), style));
                }
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::LowerRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK.mix(0.3))
                .label_font(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
        }
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// The time axis: from the power of ten at or below the shortest gap to the one at or above
/// the longest (ms), at least one decade.
fn axis_range(panels: &[Panel<'_>]) -> (f64, f64) {
    let ms = |ns: u64| crate::stats::as_f64(ns) / 1e6;
    let all = panels.iter().flat_map(|p| &p.series);
    let shortest = all
        .clone()
        .filter_map(|s| s.gaps.first())
        .map(|&g| ms(g).max(SHORTEST_MS))
        .fold(f64::INFINITY, f64::min);
    let longest = all
        .filter_map(|s| s.gaps.last())
        .map(|&g| ms(g))
        .fold(0.0, f64::max);
    if !shortest.is_finite() {
        return (0.01, 10.0);
    }
    let low = 10f64.powf(shortest.log10().floor());
    let high = 10f64.powf(longest.max(low).log10().ceil());
    (low, if high > low { high } else { low * 10.0 })
}

/// Up to `points` points `(gap ms, share of gaps ≤ it)` of an ascending sample, the first and
/// the last sample always among them.
fn cdf(sorted: &[u64], points: usize) -> Vec<(f64, f64)> {
    let n = sorted.len();
    if n == 0 || points == 0 {
        return Vec::new();
    }
    let ranks: Vec<usize> = if n <= points {
        (0..n).collect()
    } else {
        std::iter::once(0)
            .chain((1..=points).map(|k| k * n / points - 1))
            .collect()
    };
    let count = crate::stats::as_f64(n as u64);
    ranks
        .into_iter()
        .map(|i| {
            (
                crate::stats::as_f64(sorted[i]) / 1e6,
                crate::stats::as_f64(i as u64 + 1) / count,
            )
        })
        .collect()
}

/// An axis label in ms: `0.01`, `0.1`, `1`, `10`.
fn tick(ms: f64) -> String {
    let s = format!("{ms:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series<'a>(name: &'a str, kind: Kind, gaps: &'a [u64]) -> Series<'a> {
        Series { name, kind, gaps }
    }

    #[test]
    fn cdf_keeps_the_ends_and_thins_the_middle() {
        assert_eq!(cdf(&[1_000_000, 2_000_000], 10), [(1.0, 0.5), (2.0, 1.0)]);
        let many: Vec<u64> = (1..=1000).collect();
        let thinned = cdf(&many, 10);
        assert_eq!(thinned.len(), 11);
        assert_eq!(thinned.first(), Some(&(1e-6, 0.001)));
        assert_eq!(thinned.last(), Some(&(1e-3, 1.0)));
        assert!(
            thinned
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1)
        );
        assert!(cdf(&[], 10).is_empty());
    }

    #[test]
    fn the_axis_spans_whole_decades() {
        let a: [u64; 2] = [150_000, 900_000];
        let b: [u64; 1] = [42_000_000];
        let panels = [Panel {
            title: "hold 1 ms".to_owned(),
            series: vec![series("a", Kind::Ours, &a), series("b", Kind::Peer, &b)],
        }];
        assert_eq!(axis_range(&panels), (0.1, 100.0));
        let zero: [u64; 1] = [0];
        let only_zero = [Panel {
            title: String::new(),
            series: vec![series("z", Kind::Ours, &zero)],
        }];
        assert_eq!(axis_range(&only_zero), (SHORTEST_MS, SHORTEST_MS * 10.0));
        assert_eq!(axis_range(&[]), (0.01, 10.0));
    }

    #[test]
    fn colours_follow_the_kind_and_stay_put_across_panels() {
        let g: [u64; 1] = [1];
        let panels = [
            Panel {
                title: String::new(),
                series: vec![
                    series("raw", Kind::Limit, &g),
                    series("redlease", Kind::Ours, &g),
                    series("rslock", Kind::Peer, &g),
                    series("redlease-fair", Kind::Ours, &g),
                ],
            },
            Panel {
                title: String::new(),
                series: vec![
                    series("redlease-fair", Kind::Ours, &g),
                    series("wire", Kind::Limit, &g),
                ],
            },
        ];
        let c = colours(&panels);
        let names: Vec<&str> = c.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["raw", "redlease", "rslock", "redlease-fair", "wire"]
        );
        assert_eq!(c[0].1, Kind::Limit.colours()[0]);
        assert_eq!(c[1].1, Kind::Ours.colours()[0]);
        assert_eq!(c[2].1, Kind::Peer.colours()[0]);
        assert_eq!(c[3].1, Kind::Ours.colours()[1]);
        assert_eq!(c[4].1, Kind::Limit.colours()[1]);
    }

    #[test]
    fn draws_every_series_as_text_and_curves() {
        let fast: Vec<u64> = (0..500).map(|i| 100_000 + i * 1_000).collect();
        let slow: Vec<u64> = (0..500).map(|i| 1_000_000 + i * 10_000).collect();
        let panels = [
            Panel {
                title: "hold 1 ms".to_owned(),
                series: vec![
                    series("wire", Kind::Limit, &fast),
                    series("python-redis-lock", Kind::Peer, &slow),
                ],
            },
            Panel {
                title: "hold 10 ms".to_owned(),
                series: vec![series("python-redis-lock", Kind::Peer, &slow)],
            },
        ];
        let svg = idle_gaps(&panels).expect("drawn");
        assert!(svg.starts_with("<svg"), "{}", &svg[..80.min(svg.len())]);
        let texts: Vec<&str> = svg
            .split("</text>")
            .filter_map(|part| Some(part.rsplit_once('>')?.1.trim()))
            .collect();
        for text in [
            "hold 1 ms",
            "hold 10 ms",
            "wire",
            "python-redis-lock",
            "idle gap, ms (log scale)",
            "0.1",
            "10",
        ] {
            assert!(texts.contains(&text), "{text:?} not in {texts:?}");
        }
        let strokes = |RGBColor(r, g, b): RGBColor| {
            let stroke = format!("stroke=\"#{r:02X}{g:02X}{b:02X}\" stroke-width=\"2\"");
            svg.matches(&stroke).count()
        };
        // The peer: one solid curve and one legend sample per panel.
        assert_eq!(strokes(Kind::Peer.colours()[0]), 4, "python-redis-lock");
        // The limit: dashed, so many short pieces.
        assert!(strokes(Kind::Limit.colours()[0]) > 10, "wire");
        assert_eq!(tick(0.010_000_000_2), "0.01");
        assert_eq!(tick(100.0), "100");
    }
}
