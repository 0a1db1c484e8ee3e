//! The plot of a sweep: embedding bytes (as a share of the fp32 table, log scale) against
//! fidelity (mean cosine to the original), one colour and marker per family, the Pareto
//! front joined by a line and outlined, every point labelled, a legend.
//!
//! Pure: [`render_svg`] returns the SVG text and [`render_png`] the PNG file's bytes; the
//! caller writes them. Nothing here reads fonts from the system: the text is laid out (and,
//! in the PNG, drawn) with Noto Sans Regular, which the `ttf-noto-sans` crate embeds in the
//! binary (Apache License 2.0). The SVG names the generic family `sans-serif`, so a viewer
//! draws it with its own sans-serif font. The PNG is encoded by the pure-Rust `png` crate.

use std::ops::Range;
use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, ScaleFont};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};
use plotters_backend::{BackendColor, BackendCoord, BackendTextStyle, DrawingErrorKind};

use crate::{Error, Result};

/// One evaluated point of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotPoint {
    /// A short label drawn beside the point, e.g. "4 bit" or "k=4 j=8".
    pub label: String,
    /// The family the point belongs to ("plain", "svd", "clustering k=4", "tiers", ...): one
    /// colour and marker each, one legend entry each.
    pub family: String,
    /// The embedding's bytes.
    pub bytes: u64,
    /// `bytes` as a share of the fp32 table (0..1]: the x coordinate.
    pub share: f64,
    /// The held-out mean cosine to the original: the y coordinate.
    pub cosine: f64,
    /// Whether the point is on the Pareto front (no other point is both smaller and closer).
    pub on_front: bool,
}

/// What the plot says around its points.
#[derive(Debug, Clone, Copy)]
pub struct PlotSpec<'a> {
    /// The title, at the top.
    pub title: &'a str,
    /// The x axis' description, e.g. "embedding size (% of the fp32 table, log scale)".
    pub x_label: &'a str,
    /// The y axis' description, e.g. "held-out mean cosine to the original".
    pub y_label: &'a str,
    /// The fp32 table's bytes (100% on the x axis), stated under the title; 0 leaves it out.
    pub reference_bytes: u64,
}

/// The image's size in pixels (the SVG's too).
pub const SIZE: (u32, u32) = (1280, 800);

/// The family name the text is laid out with: registered with the embedded font, and the
/// generic family an SVG viewer picks a font for.
const FONT: &str = "sans-serif";

/// Renders the plot as an SVG document.
pub fn render_svg(points: &[PlotPoint], spec: &PlotSpec) -> Result<String> {
    register_embedded_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, points, spec)?;
        root.present().map_err(plot_error)?;
    }
    Ok(svg)
}

/// Renders the plot as a PNG image (8-bit RGB, [`SIZE`]): the bytes of the file.
pub fn render_png(points: &[PlotPoint], spec: &PlotSpec) -> Result<Vec<u8>> {
    register_embedded_font()?;
    let (w, h) = SIZE;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = GlyphBitmap(BitMapBackend::with_buffer(&mut rgb, SIZE)).into_drawing_area();
        draw(&root, points, spec)?;
        root.present().map_err(plot_error)?;
    }
    encode_png(&rgb, w, h)
}

/// The font the bitmap's text is drawn with (the one registered for layout).
fn embedded_font() -> Result<&'static FontRef<'static>> {
    static FONT_REF: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT_REF
        .get_or_init(|| FontRef::try_from_slice(ttf_noto_sans::REGULAR).ok())
        .as_ref()
        .ok_or_else(|| Error::Plot("the embedded font does not parse".into()))
}

/// plotters' bitmap backend with its own text drawing: plotters 0.3.7 draws each ab_glyph
/// glyph at a whole pixel and without its left side bearing, which spaces narrow letters
/// ("i", "l") visibly wrong at small sizes. Here glyphs are placed at their exact advance
/// and bearing; the layout (text widths, anchors, rotation) stays plotters'. Everything else
/// is the bitmap backend's.
struct GlyphBitmap<'a>(BitMapBackend<'a>);

type BitmapError = <BitMapBackend<'static> as DrawingBackend>::ErrorType;

impl DrawingBackend for GlyphBitmap<'_> {
    type ErrorType = BitmapError;

    fn get_size(&self) -> (u32, u32) {
        self.0.get_size()
    }
    fn ensure_prepared(&mut self) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.0.ensure_prepared()
    }
    fn present(&mut self) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.0.present()
    }
    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        colour: BackendColor,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.0.draw_pixel(point, colour)
    }
    fn draw_line<S: plotters_backend::BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.0.draw_line(from, to, style)
    }
    fn draw_rect<S: plotters_backend::BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.0.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.0.draw_path(path, style)
    }
    fn draw_circle<S: plotters_backend::BackendStyle>(
        &mut self,
        centre: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.0.draw_circle(centre, radius, style, fill)
    }
    fn fill_polygon<S: plotters_backend::BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vertices: I,
        style: &S,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.0.fill_polygon(vertices, style)
    }
    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        self.0.blit_bitmap(pos, size, src)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> std::result::Result<(), DrawingErrorKind<BitmapError>> {
        let colour = style.color();
        if colour.alpha == 0.0 {
            return Ok(());
        }
        // The same box and anchor offsets as plotters' own text drawing.
        let ((min_x, min_y), (max_x, max_y)) =
            style.layout_box(text).map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let dx = match style.anchor().h_pos {
            HPos::Left => 0,
            HPos::Right => -(max_x - min_x),
            HPos::Center => -(max_x - min_x) / 2,
        };
        let dy = match style.anchor().v_pos {
            VPos::Top => 0,
            VPos::Center => -(max_y - min_y) / 2,
            VPos::Bottom => -(max_y - min_y),
        };
        let font = embedded_font().map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        let font = font.as_scaled(style.size() as f32);
        // The baseline where an SVG viewer puts it for a top-anchored line (plotters-svg's
        // dy of 0.76em at a font size of size / 1.24).
        let baseline = 0.61 * style.size() as f32;
        let transform = style.transform();
        let (w, h) = self.get_size();
        let mut caret = 0f32;
        let mut previous = None;
        let mut result = Ok(());
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = previous {
                caret += font.kern(p, id);
            }
            previous = Some(id);
            let glyph = id.with_scale_and_position(font.scale(), ab_glyph::point(caret, baseline));
            caret += font.h_advance(id);
            let Some(outline) = font.outline_glyph(glyph) else { continue };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                if result.is_err() || coverage <= 0.0 {
                    return;
                }
                let x = bounds.min.x as i32 + gx as i32 + dx - min_x;
                let y = bounds.min.y as i32 + gy as i32 + dy - min_y;
                let (x, y) = transform.transform(x, y);
                let (x, y) = (pos.0 + x, pos.1 + y);
                if x >= 0 && y >= 0 && x < w as i32 && y < h as i32 {
                    let alpha = colour.alpha * f64::from(coverage.min(1.0));
                    result = self.0.draw_pixel((x, y), BackendColor { alpha, rgb: colour.rgb });
                }
            });
            std::mem::replace(&mut result, Ok(()))?;
        }
        Ok(())
    }
}

fn encode_png(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(plot_error)?;
    writer.write_image_data(rgb).map_err(plot_error)?;
    writer.finish().map_err(plot_error)?;
    Ok(out)
}

fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Plot(e.to_string())
}

/// Registers the embedded font under [`FONT`], once per process.
fn register_embedded_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT, FontStyle::Normal, ttf_noto_sans::REGULAR).is_ok());
    if ok { Ok(()) } else { Err(Error::Plot("the embedded font does not parse".into())) }
}

// Colours (Tableau 10, a palette made to tell categories apart) and markers by family, in
// the order the families first appear.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    InvertedTriangle,
    Plus,
}

const MARKERS: [Marker; 6] =
    [Marker::Circle, Marker::Square, Marker::Triangle, Marker::Diamond, Marker::InvertedTriangle, Marker::Plus];

/// Marker radius of a point off the front and on it (pixels).
const RADIUS: i32 = 5;
const FRONT_RADIUS: i32 = 7;

const INK: RGBColor = RGBColor(34, 34, 34);
const FRONT_LINE: RGBColor = RGBColor(60, 60, 60);

/// The outline of a marker of radius `r` centred at `c`, as a closed polygon.
fn marker_outline(marker: Marker, (x, y): (i32, i32), r: i32) -> Vec<(i32, i32)> {
    let rf = f64::from(r);
    let at = |dx: f64, dy: f64| (x + (dx * rf).round() as i32, y + (dy * rf).round() as i32);
    match marker {
        Marker::Circle => (0..24)
            .map(|i| {
                let a = f64::from(i) * std::f64::consts::TAU / 24.0;
                at(a.cos(), a.sin())
            })
            .collect(),
        Marker::Square => vec![at(-0.9, -0.9), at(0.9, -0.9), at(0.9, 0.9), at(-0.9, 0.9)],
        Marker::Triangle => vec![at(0.0, -1.25), at(1.1, 0.75), at(-1.1, 0.75)],
        Marker::InvertedTriangle => vec![at(0.0, 1.25), at(-1.1, -0.75), at(1.1, -0.75)],
        Marker::Diamond => vec![at(0.0, -1.3), at(1.0, 0.0), at(0.0, 1.3), at(-1.0, 0.0)],
        Marker::Plus => {
            let (a, b) = (0.4, 1.2);
            vec![
                at(-a, -b),
                at(a, -b),
                at(a, -a),
                at(b, -a),
                at(b, a),
                at(a, a),
                at(a, b),
                at(-a, b),
                at(-a, a),
                at(-b, a),
                at(-b, -a),
                at(-a, -a),
            ]
        }
    }
}

/// Draws a filled marker with an outline: black and thick for a front point, a darker shade
/// of the fill otherwise.
fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    marker: Marker,
    centre: (i32, i32),
    colour: RGBColor,
    front: bool,
) -> Result<()> {
    let r = if front { FRONT_RADIUS } else { RADIUS };
    let outline = marker_outline(marker, centre, r);
    let mut closed = outline.clone();
    closed.push(outline[0]);
    area.draw(&Polygon::new(outline, colour.filled())).map_err(plot_error)?;
    let edge = if front { BLACK.stroke_width(2) } else { darker(colour).stroke_width(1) };
    area.draw(&PathElement::new(closed, edge)).map_err(plot_error)?;
    Ok(())
}

fn darker(c: RGBColor) -> RGBColor {
    RGBColor((f64::from(c.0) * 0.6) as u8, (f64::from(c.1) * 0.6) as u8, (f64::from(c.2) * 0.6) as u8)
}

/// A pixel rectangle, `x0..x1` by `y0..y1`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    x0: i32,
    y0: i32,
    x1: i32,
    y1: i32,
}

impl Rect {
    fn around((x, y): (i32, i32), r: i32) -> Rect {
        Rect { x0: x - r, y0: y - r, x1: x + r, y1: y + r }
    }
    fn overlaps(&self, o: &Rect) -> bool {
        self.x0 < o.x1 && o.x0 < self.x1 && self.y0 < o.y1 && o.y0 < self.y1
    }
    fn inside(&self, o: &Rect) -> bool {
        self.x0 >= o.x0 && self.x1 <= o.x1 && self.y0 >= o.y0 && self.y1 <= o.y1
    }
    /// The squared distance from `p` to the rectangle.
    fn distance2(&self, p: (i32, i32)) -> i64 {
        let (nx, ny) = self.nearest(p);
        let (dx, dy) = (i64::from(nx - p.0), i64::from(ny - p.1));
        dx * dx + dy * dy
    }
    /// The point of the rectangle nearest to `p`.
    fn nearest(&self, (x, y): (i32, i32)) -> (i32, i32) {
        (x.clamp(self.x0, self.x1), y.clamp(self.y0, self.y1))
    }
}

/// Small squares every 4 pixels along the segment from `a` to `b`, each `r` from its centre.
fn along((x0, y0): (i32, i32), (x1, y1): (i32, i32), r: i32) -> Vec<Rect> {
    let steps = ((x1 - x0).abs().max((y1 - y0).abs()) / 4).max(1);
    (0..=steps)
        .map(|s| {
            let t = f64::from(s) / f64::from(steps);
            let x = x0 + (f64::from(x1 - x0) * t).round() as i32;
            let y = y0 + (f64::from(y1 - y0) * t).round() as i32;
            Rect::around((x, y), r)
        })
        .collect()
}

/// What the leader line from a point (marker radius `r`) to its label covers, outside the
/// marker and the label.
fn leader_line(p: (i32, i32), r: i32, label: &Rect) -> Vec<Rect> {
    let marker = Rect::around(p, r + 2);
    along(p, label.nearest(p), 1).into_iter().filter(|s| !s.overlaps(&marker) && !s.overlaps(label)).collect()
}

/// Where a family's points are drawn.
struct Style {
    colour: RGBColor,
    marker: Marker,
}

/// A point that can be drawn: finite coordinates, in percent.
struct Placed<'p> {
    point: &'p PlotPoint,
    x: f64,
    y: f64,
    family: usize,
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, points: &[PlotPoint], spec: &PlotSpec) -> Result<()>
where
    DB::ErrorType: 'static,
{
    // Families in order of first appearance, over all points so that colours do not depend
    // on which points could be drawn.
    let mut families: Vec<&str> = Vec::new();
    for p in points {
        if !families.contains(&p.family.as_str()) {
            families.push(&p.family);
        }
    }
    let styles: Vec<Style> = (0..families.len())
        .map(|i| Style { colour: PALETTE[i % PALETTE.len()], marker: MARKERS[i % MARKERS.len()] })
        .collect();
    let mut placed = Vec::new();
    let mut skipped = Vec::new();
    for p in points {
        if p.cosine.is_finite() && p.share.is_finite() && p.share > 0.0 {
            let family = families.iter().position(|f| *f == p.family).unwrap_or(0);
            placed.push(Placed { point: p, x: 100.0 * p.share, y: p.cosine, family });
        } else {
            skipped.push(p.label.as_str());
        }
    }
    let shown_families: Vec<usize> = (0..families.len()).filter(|&i| placed.iter().any(|p| p.family == i)).collect();

    root.fill(&WHITE).map_err(plot_error)?;
    let (width, _) = root.dim_in_pixel();
    let (header, body) = root.split_vertically(78);
    let centred = |size: f64| TextStyle::from((FONT, size).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    header.draw(&Text::new(spec.title, (width as i32 / 2, 12), centred(28.0).color(&INK))).map_err(plot_error)?;
    let mut facts = Vec::new();
    if spec.reference_bytes > 0 {
        facts.push(format!(
            "100% = the fp32 table, {} ({} bytes)",
            megabytes(spec.reference_bytes),
            thousands(spec.reference_bytes)
        ));
    }
    let on_front = placed.iter().filter(|p| p.point.on_front).count();
    facts.push(format!(
        "{} point{}, {on_front} on the Pareto front",
        placed.len(),
        if placed.len() == 1 { "" } else { "s" }
    ));
    header
        .draw(&Text::new(facts.join("  ·  "), (width as i32 / 2, 50), centred(17.0).color(&RGBColor(90, 90, 90))))
        .map_err(plot_error)?;

    let x_range = x_range(&placed);
    let y_range = y_range(&placed);
    let (x_bold, x_light) = log_ticks(&x_range);
    let y_span = y_range.end - y_range.start;
    let y_decimals = if y_span < 0.02 { 4 } else { 3 };
    let mut chart = ChartBuilder::on(&body)
        .margin_left(20)
        .margin_right(30)
        .margin_bottom(16)
        .x_label_area_size(62)
        .y_label_area_size(84)
        .build_cartesian_2d(
            x_range.clone().log_scale().with_key_points(x_bold).with_light_points(x_light),
            y_range.clone(),
        )
        .map_err(plot_error)?;
    chart
        .configure_mesh()
        .x_desc(spec.x_label)
        .y_desc(spec.y_label)
        .x_label_formatter(&|v| format!("{}%", trim_number(*v)))
        .y_label_formatter(&|v| format!("{v:.y_decimals$}"))
        .y_labels(10)
        .y_max_light_lines(1)
        .label_style((FONT, 16).into_font().color(&INK))
        .axis_desc_style((FONT, 18).into_font().color(&INK))
        .bold_line_style(RGBColor(200, 200, 200))
        .light_line_style(RGBColor(236, 236, 236))
        .axis_style(RGBColor(120, 120, 120))
        .draw()
        .map_err(plot_error)?;

    let (px, py) = chart.plotting_area().get_pixel_range();
    let frame = Rect { x0: px.start, y0: py.start, x1: px.end, y1: py.end };
    let pixel: Vec<(i32, i32)> = placed.iter().map(|p| chart.backend_coord(&(p.x, p.y))).collect();

    // The front, left to right, under the markers.
    let mut front: Vec<usize> = (0..placed.len()).filter(|&i| placed[i].point.on_front).collect();
    front.sort_by(|&a, &b| placed[a].x.total_cmp(&placed[b].x).then(placed[a].y.total_cmp(&placed[b].y)));
    let front_px: Vec<(i32, i32)> = front.iter().map(|&i| pixel[i]).collect();
    if front_px.len() > 1 {
        root.draw(&PathElement::new(front_px.clone(), FRONT_LINE.stroke_width(2))).map_err(plot_error)?;
    }

    // Markers: off the front first, so that the front's are on top.
    let mut order: Vec<usize> = (0..placed.len()).collect();
    order.sort_by_key(|&i| placed[i].point.on_front);
    for &i in &order {
        let s = &styles[placed[i].family];
        draw_marker(root, s.marker, pixel[i], s.colour, placed[i].point.on_front)?;
    }

    // What labels must not cover: the markers and the front line.
    let mut taken: Vec<Rect> =
        (0..placed.len()).map(|i| Rect::around(pixel[i], if placed[i].point.on_front { 9 } else { 7 })).collect();
    for w in front_px.windows(2) {
        taken.extend(along(w[0], w[1], 2));
    }

    // The legend, in the corner of the plot that it hides the fewest points in.
    let legend_font = (FONT, 16).into_font();
    let mut entries: Vec<(String, Option<usize>)> =
        shown_families.iter().map(|&i| (families[i].to_string(), Some(i))).collect();
    if !front.is_empty() {
        entries.push(("Pareto front (outlined)".to_string(), None));
    }
    if !entries.is_empty() {
        let row = 24;
        let text_w = entries
            .iter()
            .map(|(t, _)| root.estimate_text_size(t, &legend_font.clone().into()).map(|(w, _)| slack(w)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(plot_error)?
            .into_iter()
            .max()
            .unwrap_or(0);
        let (w, h) = (text_w + 66, row * entries.len() as i32 + 14);
        let pad = 12;
        let corners = [
            Rect { x0: frame.x1 - pad - w, y0: frame.y1 - pad - h, x1: frame.x1 - pad, y1: frame.y1 - pad },
            Rect { x0: frame.x0 + pad, y0: frame.y0 + pad, x1: frame.x0 + pad + w, y1: frame.y0 + pad + h },
            Rect { x0: frame.x0 + pad, y0: frame.y1 - pad - h, x1: frame.x0 + pad + w, y1: frame.y1 - pad },
            Rect { x0: frame.x1 - pad - w, y0: frame.y0 + pad, x1: frame.x1 - pad, y1: frame.y0 + pad + h },
        ];
        let hidden = |r: &Rect| {
            let grown = Rect { x0: r.x0 - 40, y0: r.y0 - 14, x1: r.x1 + 40, y1: r.y1 + 14 };
            taken.iter().filter(|t| t.overlaps(&grown)).count()
        };
        let mut best = corners[0];
        for c in &corners[1..] {
            if hidden(c) < hidden(&best) {
                best = *c;
            }
        }
        root.draw(&Rectangle::new([(best.x0, best.y0), (best.x1, best.y1)], WHITE.mix(0.92).filled()))
            .map_err(plot_error)?;
        root.draw(&Rectangle::new([(best.x0, best.y0), (best.x1, best.y1)], RGBColor(160, 160, 160)))
            .map_err(plot_error)?;
        for (k, (text, family)) in entries.iter().enumerate() {
            let cy = best.y0 + 7 + row * k as i32 + row / 2;
            let cx = best.x0 + 28;
            match family {
                Some(f) => draw_marker(root, styles[*f].marker, (cx, cy), styles[*f].colour, false)?,
                None => {
                    root.draw(&PathElement::new(vec![(cx - 18, cy), (cx + 18, cy)], FRONT_LINE.stroke_width(2)))
                        .map_err(plot_error)?;
                    draw_marker(root, Marker::Circle, (cx, cy), RGBColor(255, 255, 255), true)?;
                }
            }
            let style = TextStyle::from(legend_font.clone()).color(&INK).pos(Pos::new(HPos::Left, VPos::Center));
            root.draw(&Text::new(text.as_str(), (best.x0 + 56, cy), style)).map_err(plot_error)?;
        }
        taken.push(best);
    }

    // Labels: the front's first, then left to right; each at the first place around its point
    // that is free and inside the plot, with a leader line when it had to move away.
    let label_font = (FONT, 14).into_font();
    let label_style = TextStyle::from(label_font.clone()).color(&INK);
    let mut label_order: Vec<usize> = (0..placed.len()).collect();
    label_order.sort_by(|&a, &b| {
        placed[b].point.on_front.cmp(&placed[a].point.on_front).then(placed[a].x.total_cmp(&placed[b].x))
    });
    for &i in &label_order {
        let text = placed[i].point.label.as_str();
        if text.is_empty() {
            continue;
        }
        let (tw, th) = root.estimate_text_size(text, &label_style).map_err(plot_error)?;
        let (tw, th) = (slack(tw) + 2, th as i32 + 4);
        let r = if placed[i].point.on_front { FRONT_RADIUS } else { RADIUS };
        let (x, y) = pixel[i];
        let mut choice = None;
        'search: for d in [0, 10, 22, 36, 54, 76, 100] {
            for (cx, cy) in [(1, 0), (-1, 0), (1, -1), (1, 1), (-1, -1), (-1, 1), (0, -1), (0, 1)] {
                let reach = f64::from(r + 3 + d) * if cx != 0 && cy != 0 { 0.8 } else { 1.0 };
                let ax = x + (f64::from(cx) * reach).round() as i32;
                let ay = y + (f64::from(cy) * reach).round() as i32;
                let x0 = match cx {
                    1 => ax,
                    -1 => ax - tw,
                    _ => ax - tw / 2,
                };
                let y0 = match cy {
                    1 => ay,
                    -1 => ay - th,
                    _ => ay - th / 2,
                };
                let rect = Rect { x0, y0, x1: x0 + tw, y1: y0 + th };
                if !rect.inside(&frame) || taken.iter().any(|t| t.overlaps(&rect)) {
                    continue;
                }
                // Beside its point, nearer to it than to any other, so that it names the right
                // one (further out, the leader line does).
                let own = rect.distance2((x, y));
                if d == 0 && pixel.iter().enumerate().any(|(j, &q)| j != i && rect.distance2(q) < own) {
                    continue;
                }
                // A leader line that crosses nothing but its own marker.
                let leader = if d > 0 { leader_line((x, y), r, &rect) } else { Vec::new() };
                if leader.iter().any(|l| taken.iter().enumerate().any(|(j, t)| j != i && t.overlaps(l))) {
                    continue;
                }
                choice = Some((rect, d > 0, cx));
                break 'search;
            }
        }
        let (rect, leader, side) = choice.unwrap_or_else(|| {
            // Nowhere free: to the right (or the left near the right edge), inside the plot.
            let right = x + r + 3 + tw <= frame.x1;
            let x0 = if right { x + r + 3 } else { x - r - 3 - tw };
            let y0 = (y - th / 2).clamp(frame.y0, (frame.y1 - th).max(frame.y0));
            (Rect { x0, y0, x1: x0 + tw, y1: y0 + th }, false, if right { 1 } else { -1 })
        });
        if leader {
            let end = rect.nearest((x, y));
            root.draw(&PathElement::new(vec![(x, y), end], RGBColor(150, 150, 150).stroke_width(1)))
                .map_err(plot_error)?;
            taken.extend(leader_line((x, y), r, &rect));
        }
        // Anchored on the side facing the point, so that a wider font (an SVG viewer's) grows
        // away from it.
        let (anchor, ax) = match side {
            1 => (HPos::Left, rect.x0 + 1),
            -1 => (HPos::Right, rect.x1 - 1),
            _ => (HPos::Center, (rect.x0 + rect.x1) / 2),
        };
        let style = label_style.clone().pos(Pos::new(anchor, VPos::Top));
        root.draw(&Text::new(text, (ax, rect.y0 + 2), style)).map_err(plot_error)?;
        taken.push(rect);
    }

    let note_style = |size: f64| {
        TextStyle::from((FONT, size).into_font())
            .color(&RGBColor(150, 40, 40))
            .pos(Pos::new(HPos::Center, VPos::Center))
    };
    if placed.is_empty() {
        let msg = if points.is_empty() { "no points to plot" } else { "no point has a finite size and cosine" };
        let c = ((frame.x0 + frame.x1) / 2, (frame.y0 + frame.y1) / 2);
        root.draw(&Text::new(msg, c, note_style(22.0))).map_err(plot_error)?;
    }
    if !skipped.is_empty() {
        let mut list = skipped.iter().take(6).copied().collect::<Vec<_>>().join(", ");
        if skipped.len() > 6 {
            list.push_str(&format!(" and {} more", skipped.len() - 6));
        }
        let msg = format!("not plotted (size or cosine not finite): {list}");
        let c = ((frame.x0 + frame.x1) / 2, frame.y0 + 14);
        root.draw(&Text::new(msg, c, note_style(14.0))).map_err(plot_error)?;
    }
    Ok(())
}

/// The room a text may take, from plotters' estimate of its width: an SVG viewer draws at a
/// font size 10% above the estimate's, in a font of its own that may be 10% wider still
/// (DejaVu Sans against Noto Sans).
fn slack(estimated_width: u32) -> i32 {
    (f64::from(estimated_width) * 1.22).ceil() as i32
}

/// The x range in percent: the points' with a margin of a third on either side (log scale),
/// or 1..100% without points.
fn x_range(placed: &[Placed]) -> Range<f64> {
    let (lo, hi) = placed.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.x), hi.max(p.x)));
    if lo > hi {
        return 1.0..100.0;
    }
    // At least a factor of 4, so that a lone point or a narrow sweep still gets three ticks.
    let widen = (4.0 / (hi / lo * 1.35 * 1.35)).max(1.0).sqrt();
    lo / 1.35 / widen..hi * 1.35 * widen
}

/// The y range: the points' with a margin of 8% of their spread (at least 0.002, and no
/// more than that above 1), or 0.85..1.0 without points.
fn y_range(placed: &[Placed]) -> Range<f64> {
    let (lo, hi) = placed.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.y), hi.max(p.y)));
    if lo > hi {
        return 0.85..1.0;
    }
    let span = (hi - lo).max(0.002);
    let margin = 0.08 * span;
    let mid = (lo + hi) / 2.0;
    let (bottom, top) = (mid - span / 2.0 - margin, mid + span / 2.0 + margin);
    // No cosine is above 1: the axis goes past it only by what the labels need.
    bottom..top.min(hi.max(1.0) + margin)
}

/// Tick values of a log axis over `range` (percent): 1, 2, 3, 5 times powers of ten labelled
/// (all of 1..9 when that gives fewer than three), 1..9 times powers of ten as light lines.
fn log_ticks(range: &Range<f64>) -> (Vec<f64>, Vec<f64>) {
    let within = |steps: &[f64]| {
        let mut v = Vec::new();
        let (e0, e1) = (range.start.log10().floor() as i32 - 1, range.end.log10().ceil() as i32 + 1);
        for e in e0..=e1 {
            for s in steps {
                let t = s * 10f64.powi(e);
                if t >= range.start && t <= range.end {
                    v.push(t);
                }
            }
        }
        v
    };
    let all: Vec<f64> = (1..10).map(f64::from).collect();
    let mut bold = within(&[1.0, 2.0, 3.0, 5.0]);
    if bold.len() < 3 {
        bold = within(&all);
    }
    let light = within(&all).into_iter().filter(|t| !bold.contains(t)).collect();
    (bold, light)
}

/// A tick value without trailing zeros: 3, 0.5, 20.
fn trim_number(v: f64) -> String {
    let s = format!("{v:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

fn megabytes(bytes: u64) -> String {
    let mb = bytes as f64 / 1e6;
    if mb >= 100.0 {
        format!("{mb:.0} MB")
    } else if mb >= 1.0 {
        format!("{mb:.1} MB")
    } else {
        format!("{mb:.3} MB")
    }
}

/// `n` with its digits grouped by commas: 46,881,792.
#[doc(hidden)]
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: u64 = 30522 * 384 * 4;

    fn point(label: &str, family: &str, share: f64, cosine: f64, on_front: bool) -> PlotPoint {
        PlotPoint {
            label: label.to_string(),
            family: family.to_string(),
            bytes: (share * TABLE as f64).round() as u64,
            share,
            cosine,
            on_front,
        }
    }

    /// Made-up but realistic: plain quantization, a truncated SVD, clustering k=4 and k=8 at
    /// several sizes, frequent-token tiers.
    fn example() -> Vec<PlotPoint> {
        with_front(vec![
            point("plain fp16", "plain", 0.50, 0.999_99, true),
            point("plain 8 bit", "plain", 0.25, 0.9997, true),
            point("plain 4 bit", "plain", 0.14, 0.997, false),
            point("plain 2 bit", "plain", 0.094, 0.979, false),
            point("svd r=192", "svd", 0.52, 0.996, false),
            point("svd r=128", "svd", 0.35, 0.985, false),
            point("svd r=96", "svd", 0.26, 0.972, false),
            point("svd r=64", "svd", 0.18, 0.951, false),
            point("svd r=32", "svd", 0.092, 0.905, false),
            point("k=4 j=192", "clustering k=4", 0.60, 0.9990, false),
            point("k=4 j=128", "clustering k=4", 0.41, 0.9962, false),
            point("k=4 j=64", "clustering k=4", 0.21, 0.986, false),
            point("k=4 j=32 8b", "clustering k=4", 0.085, 0.9905, true),
            point("k=4 j=16 8b", "clustering k=4", 0.048, 0.972, true),
            point("k=4 j=8 8b", "clustering k=4", 0.030, 0.935, true),
            point("k=4 j=32 4b", "clustering k=4", 0.058, 0.958, false),
            point("k=4 j=8 4b", "clustering k=4", 0.025, 0.880, true),
            point("k=8 j=96", "clustering k=8", 0.33, 0.9935, false),
            point("k=8 j=48", "clustering k=8", 0.17, 0.9890, false),
            point("k=8 j=24 8b", "clustering k=8", 0.067, 0.9870, true),
            point("k=8 j=12 8b", "clustering k=8", 0.041, 0.9660, false),
            point("tiers 8/2", "tiers", 0.107, 0.9967, true),
            point("tiers 8/4", "tiers", 0.152, 0.9985, true),
            point("tiers 4/2", "tiers", 0.098, 0.9903, false),
            point("tiers fp16/2", "tiers", 0.130, 0.9979, false),
        ])
    }

    /// Sets `on_front` of the points no other point dominates (as small or smaller, as close or
    /// closer, one of the two strictly).
    fn with_front(mut points: Vec<PlotPoint>) -> Vec<PlotPoint> {
        let dominated = |p: &PlotPoint, all: &[PlotPoint]| {
            all.iter().any(|q| q.share <= p.share && q.cosine >= p.cosine && (q.share < p.share || q.cosine > p.cosine))
        };
        let front: Vec<bool> = points.iter().map(|p| !dominated(p, &points)).collect();
        for (p, f) in points.iter_mut().zip(front) {
            p.on_front = f;
        }
        points
    }

    fn spec() -> PlotSpec<'static> {
        PlotSpec {
            title: "all-MiniLM-L6-v2: embedding size against fidelity",
            x_label: "embedding size (% of the fp32 table, log scale)",
            y_label: "held-out mean cosine to the original",
            reference_bytes: TABLE,
        }
    }

    /// Decodes a PNG with the png crate: (width, height, RGB pixels).
    fn decode(png_bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        assert_eq!(info.bit_depth, png::BitDepth::Eight);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn xml_escape(s: &str) -> String {
        s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
    }

    /// The contents of the SVG's text elements, trimmed.
    fn texts(svg: &str) -> Vec<String> {
        svg.split("<text")
            .skip(1)
            .filter_map(|t| Some(t[t.find('>')? + 1..t.find("</text>")?].trim().to_string()))
            .collect()
    }

    #[test]
    fn svg_holds_every_label_the_legend_and_the_axes() {
        let points = example();
        let svg = render_svg(&points, &spec()).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..80]);
        assert!(svg.trim_end().ends_with("</svg>"));
        let texts = texts(&svg);
        for p in &points {
            assert!(texts.contains(&xml_escape(&p.label)), "label {:?} missing", p.label);
        }
        for family in ["plain", "svd", "clustering k=4", "clustering k=8", "tiers", "Pareto front (outlined)"] {
            assert!(texts.iter().any(|t| t == family), "legend entry {family:?} missing");
        }
        assert!(svg.contains(spec().title));
        assert!(svg.contains(spec().x_label) && svg.contains(spec().y_label));
        assert!(svg.contains("100% = the fp32 table, 46.9 MB (46,881,792 bytes)"));
        assert!(svg.contains("25 points, 11 on the Pareto front"));
        for tick in ["3%", "10%", "50%"] {
            assert!(texts.iter().any(|t| t == tick), "tick {tick} missing");
        }
        assert!(svg.contains("font-family=\"sans-serif\""));
    }

    #[test]
    fn png_decodes_to_the_stated_size_and_is_not_blank() {
        let bytes = render_png(&example(), &spec()).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert_eq!(&bytes[12..16], b"IHDR");
        assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), SIZE.0);
        assert_eq!(u32::from_be_bytes(bytes[20..24].try_into().unwrap()), SIZE.1);
        let (w, h, rgb) = decode(&bytes);
        assert_eq!((w, h), SIZE);
        assert_eq!(rgb.len(), w as usize * h as usize * 3);
        let px = |x: u32, y: u32| {
            let i = 3 * (y as usize * w as usize + x as usize);
            [rgb[i], rgb[i + 1], rgb[i + 2]]
        };
        assert_eq!(px(0, 0), [255, 255, 255], "white background");
        let ink = rgb.chunks(3).filter(|c| c != &[255, 255, 255]).count();
        assert!(ink > 10_000, "only {ink} non-white pixels");
        // Every family's colour is drawn somewhere (markers and legend).
        for c in &PALETTE[..5] {
            assert!(rgb.chunks(3).any(|p| p == [c.0, c.1, c.2]), "colour {c:?} not drawn");
        }
        // The title's text is drawn: dark pixels in the band above the chart.
        let title_ink = (0..70).flat_map(|y| (0..w).map(move |x| (x, y))).filter(|&(x, y)| px(x, y)[0] < 128).count();
        assert!(title_ink > 200, "title drawn with only {title_ink} dark pixels");
    }

    #[test]
    fn no_points_gives_a_plot_saying_so() {
        let svg = render_svg(&[], &spec()).unwrap();
        assert!(svg.contains("no points to plot"));
        let (w, h, _) = decode(&render_png(&[], &spec()).unwrap());
        assert_eq!((w, h), SIZE);
    }

    #[test]
    fn a_single_point_is_plotted() {
        for front in [false, true] {
            let points = [point("only", "plain", 0.25, 0.9997, front)];
            let svg = render_svg(&points, &spec()).unwrap();
            let texts = texts(&svg);
            assert!(texts.iter().any(|t| t == "only") && texts.iter().any(|t| t == "plain"));
            decode(&render_png(&points, &spec()).unwrap());
        }
        // Equal points, a share of exactly 100%, a cosine of exactly 1.
        let points = [point("a", "plain", 1.0, 1.0, true), point("b", "plain", 1.0, 1.0, true)];
        let svg = render_svg(&points, &spec()).unwrap();
        let texts = texts(&svg);
        assert!(["a", "b", "100%"].iter().all(|w| texts.iter().any(|t| t == w)), "{texts:?}");
        decode(&render_png(&points, &spec()).unwrap());
    }

    #[test]
    fn non_finite_points_are_skipped_and_named() {
        let mut points = example();
        points[3].cosine = f64::NAN;
        points[5].cosine = f64::INFINITY;
        points[7].share = 0.0;
        let svg = render_svg(&points, &spec()).unwrap();
        assert!(svg.contains("not plotted (size or cosine not finite): plain 2 bit, svd r=128, svd r=64"));
        assert!(svg.contains("22 points, 11 on the Pareto front"));
        assert!(!texts(&svg).iter().any(|t| t == "plain 2 bit"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        decode(&render_png(&points, &spec()).unwrap());
        let all_nan: Vec<PlotPoint> = points.iter().cloned().map(|p| PlotPoint { cosine: f64::NAN, ..p }).collect();
        let svg = render_svg(&all_nan, &spec()).unwrap();
        assert!(svg.contains("no point has a finite size and cosine"));
        decode(&render_png(&all_nan, &spec()).unwrap());
    }

    #[test]
    fn text_is_escaped_in_the_svg() {
        let points = [point("a<b & c", "fam \"x\"", 0.2, 0.99, true)];
        let svg = render_svg(&points, &spec()).unwrap();
        assert!(svg.contains("a&lt;b &amp; c"));
        assert!(!svg.contains("a<b"));
    }

    #[test]
    fn colours_follow_the_families_first_appearance() {
        let points =
            [point("x", "b", 0.2, 0.99, false), point("y", "a", 0.3, 0.995, false), point("z", "b", 0.4, 0.999, true)];
        let svg = render_svg(&points, &spec()).unwrap();
        let hex = |c: RGBColor| format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2);
        let first = svg.find(&hex(PALETTE[0])).or_else(|| svg.find(&hex(PALETTE[0]).to_lowercase()));
        assert!(first.is_some(), "first family's colour not used");
    }

    #[test]
    fn helpers() {
        assert_eq!(thousands(46_881_792), "46,881,792");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(trim_number(3.0), "3");
        assert_eq!(trim_number(0.5), "0.5");
        assert_eq!(trim_number(20.000_000_1), "20");
        let (bold, light) = log_ticks(&(2.2..81.0));
        assert_eq!(bold.iter().map(|v| trim_number(*v)).collect::<Vec<_>>(), ["3", "5", "10", "20", "30", "50"]);
        assert!(light.iter().all(|v| !bold.contains(v)) && light.len() > 5);
        let lone = [PlotPoint {
            label: String::new(),
            family: String::new(),
            bytes: 0,
            share: 0.25,
            cosine: 0.9,
            on_front: true,
        }];
        let lone = [Placed { point: &lone[0], x: 25.0, y: 0.9, family: 0 }];
        let range = x_range(&lone);
        assert!(range.start < 25.0 && range.end > 25.0 && range.end / range.start >= 3.99, "{range:?}");
        let (bold, _) = log_ticks(&range);
        assert!(bold.len() >= 3, "{bold:?}");
        let y = y_range(&lone);
        assert!(y.start < 0.9 && y.end > 0.9, "{y:?}");
        let top = [Placed {
            point: &PlotPoint { cosine: 0.9997, ..PlotPoint::clone(lone[0].point) },
            x: 25.0,
            y: 0.9997,
            family: 0,
        }];
        assert!((y_range(&top).end - 1.00016).abs() < 1e-9, "{:?}", y_range(&top));
        let example: Vec<PlotPoint> = example();
        let all: Vec<Placed> =
            example.iter().map(|p| Placed { point: p, x: 100.0 * p.share, y: p.cosine, family: 0 }).collect();
        let y = y_range(&all);
        assert!(y.start < 0.88 && y.start > 0.86 && y.end > 1.009 && y.end < 1.01, "{y:?}");
    }

    /// Writes the example plot to the temporary directory (plot-example.svg and .png), to look
    /// at: `cargo test --lib plot::tests::write_example -- --ignored`.
    #[test]
    #[ignore]
    fn write_example() {
        let dir = std::env::temp_dir();
        std::fs::write(dir.join("plot-example.svg"), render_svg(&example(), &spec()).unwrap()).unwrap();
        std::fs::write(dir.join("plot-example.png"), render_png(&example(), &spec()).unwrap()).unwrap();
    }
}
