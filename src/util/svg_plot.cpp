#include "util/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace muse {

namespace {

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                               "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string tick_label(double v) {
  char buf[32];
  const double a = std::fabs(v);
  if (a != 0 && (a >= 1e5 || a < 1e-2))
    std::snprintf(buf, sizeof buf, "%.0e", v);
  else
    std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

// One axis: value -> pixel, and where the ticks go.
struct Axis {
  double lo = 0, hi = 1;
  bool log = false;
  double pixel_lo = 0, pixel_hi = 1;
  double map(double v) const {
    const double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                         : (v - lo) / (hi - lo);
    return pixel_lo + t * (pixel_hi - pixel_lo);
  }
  std::vector<double> ticks() const {
    std::vector<double> t;
    if (log) {
      double p = std::pow(10, std::floor(std::log10(lo)));
      for (int decade = 0; decade < 64 && p <= hi * 1.0001; ++decade, p *= 10)
        for (double m : {1.0, 2.0, 5.0})
          if (p * m >= lo * 0.9999 && p * m <= hi * 1.0001) t.push_back(p * m);
      return t;
    }
    const double raw = (hi - lo) / 6, mag = std::pow(10, std::floor(std::log10(raw)));
    const double step = raw / mag < 2 ? 2 * mag : raw / mag < 5 ? 5 * mag : 10 * mag;
    // Ticks by index (a step below the values' precision would never advance a running sum).
    const double first = std::ceil(lo / step);
    for (int k = 0; k < 32 && (first + k) * step <= hi + step * 1e-9; ++k) {
      const double v = (first + k) * step;
      t.push_back(std::fabs(v) < step * 1e-9 ? 0 : v);
    }
    return t;
  }
};

// Range of the finite values the axis can show, widened a little (linear axes start at zero
// when the data is positive: throughput and accuracy read best that way).
Axis fit_axis(std::vector<double> values, bool log) {
  Axis a;
  a.log = log;
  values.erase(std::remove_if(values.begin(), values.end(),
                              // (beyond 1e300 the padded range would overflow)
                              [&](double v) {
                                return !std::isfinite(v) || std::fabs(v) > 1e300 || (log && v <= 0);
                              }),
               values.end());
  if (values.empty()) {
    a.lo = log ? 1 : 0;
    a.hi = log ? 10 : 1;
    return a;
  }
  const auto [mn, mx] = std::minmax_element(values.begin(), values.end());
  a.lo = *mn;
  a.hi = *mx;
  if (log) {
    a.lo = std::pow(10, std::floor(std::log10(a.lo) * 4) / 4);
    a.hi = std::pow(10, std::ceil(std::log10(a.hi) * 4) / 4);
    if (a.hi <= a.lo) a.hi = a.lo * 10;
  } else {
    if (a.lo > 0) a.lo = 0;
    const double pad = (a.hi - a.lo) * 0.08;
    a.hi += pad > 0 ? pad : 1;
  }
  return a;
}

}  // namespace

std::string render_svg(const PlotSpec& spec) {
  const double left = 78, right = 190, top = 44, bottom = 56;
  std::vector<double> xs, ys;
  for (const PlotSeries& s : spec.series) {
    xs.insert(xs.end(), s.x.begin(), s.x.end());
    ys.insert(ys.end(), s.y.begin(), s.y.end());
  }
  Axis ax = fit_axis(xs, spec.log_x), ay = fit_axis(ys, spec.log_y);
  ax.pixel_lo = left;
  ax.pixel_hi = spec.width - right;
  ay.pixel_lo = spec.height - bottom;
  ay.pixel_hi = top;
  auto visible = [&](double x, double y) {
    return std::isfinite(x) && std::isfinite(y) && (!spec.log_x || x > 0) && (!spec.log_y || y > 0);
  };

  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" +
                    std::to_string(spec.width) + "\" height=\"" + std::to_string(spec.height) +
                    "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  svg += "<text x=\"" + num(spec.width / 2.0) +
         "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" + escape(spec.title) + "</text>\n";
  for (double t : ax.ticks()) {
    const double x = ax.map(t);
    svg += "<line x1=\"" + num(x) + "\" y1=\"" + num(top) + "\" x2=\"" + num(x) + "\" y2=\"" +
           num(ay.pixel_lo) + "\" stroke=\"#e5e5e5\"/>\n";
    svg += "<text x=\"" + num(x) + "\" y=\"" + num(ay.pixel_lo + 16) +
           "\" text-anchor=\"middle\">" + tick_label(t) + "</text>\n";
  }
  for (double t : ay.ticks()) {
    const double y = ay.map(t);
    svg += "<line x1=\"" + num(left) + "\" y1=\"" + num(y) + "\" x2=\"" + num(ax.pixel_hi) +
           "\" y2=\"" + num(y) + "\" stroke=\"#e5e5e5\"/>\n";
    svg += "<text x=\"" + num(left - 6) + "\" y=\"" + num(y + 4) + "\" text-anchor=\"end\">" +
           tick_label(t) + "</text>\n";
  }
  svg += "<rect x=\"" + num(left) + "\" y=\"" + num(top) + "\" width=\"" + num(ax.pixel_hi - left) +
         "\" height=\"" + num(ay.pixel_lo - top) + "\" fill=\"none\" stroke=\"#444\"/>\n";
  svg += "<text x=\"" + num((left + ax.pixel_hi) / 2) + "\" y=\"" + num(spec.height - 14.0) +
         "\" text-anchor=\"middle\">" + escape(spec.x_label) + "</text>\n";
  svg += "<text transform=\"translate(18," + num((top + ay.pixel_lo) / 2) +
         ") rotate(-90)\" text-anchor=\"middle\">" + escape(spec.y_label) + "</text>\n";

  for (size_t i = 0; i < spec.series.size(); ++i) {
    const PlotSeries& s = spec.series[i];
    const std::string color = kColors[i % (sizeof kColors / sizeof kColors[0])];
    if (s.line) {
      std::string points;
      for (size_t j = 0; j < s.x.size() && j < s.y.size(); ++j)
        if (visible(s.x[j], s.y[j]))
          points += num(ax.map(s.x[j])) + "," + num(ay.map(s.y[j])) + " ";
      svg += "<polyline fill=\"none\" stroke=\"" + color + "\" stroke-width=\"2\"" +
             (s.dashed ? " stroke-dasharray=\"6 4\"" : "") + " points=\"" + points + "\"/>\n";
    }
    if (s.markers)
      for (size_t j = 0; j < s.x.size() && j < s.y.size(); ++j)
        if (visible(s.x[j], s.y[j]))
          svg += "<circle cx=\"" + num(ax.map(s.x[j])) + "\" cy=\"" + num(ay.map(s.y[j])) +
                 "\" r=\"4\" fill=\"" + color + "\"/>\n";
    const double ly = top + 10 + 20.0 * double(i), lx = ax.pixel_hi + 14;
    if (s.line)
      svg += "<line x1=\"" + num(lx) + "\" y1=\"" + num(ly) + "\" x2=\"" + num(lx + 22) +
             "\" y2=\"" + num(ly) + "\" stroke=\"" + color + "\" stroke-width=\"2\"" +
             (s.dashed ? " stroke-dasharray=\"6 4\"" : "") + "/>\n";
    if (s.markers)
      svg += "<circle cx=\"" + num(lx + 11) + "\" cy=\"" + num(ly) + "\" r=\"4\" fill=\"" + color +
             "\"/>\n";
    svg += "<text x=\"" + num(lx + 28) + "\" y=\"" + num(ly + 4) + "\">" + escape(s.name) +
           "</text>\n";
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace muse
