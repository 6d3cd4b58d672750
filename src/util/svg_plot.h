// Small self-contained SVG charts (no plotting library in Debian's C++ world fits a CLI): series
// of points drawn as markers and/or lines over linear or logarithmic axes, with a legend.
// Benchmarks and evaluations write them next to their tables.
#pragma once
#include <string>
#include <vector>

namespace muse {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;
  bool line = false, markers = true;
  bool dashed = false;
};

struct PlotSpec {
  std::string title, x_label, y_label;
  bool log_x = false, log_y = false;
  std::vector<PlotSeries> series;
  int width = 760, height = 480;
};

// The chart as a complete SVG document. Points that a log axis cannot show (<= 0) are left out.
std::string render_svg(const PlotSpec& spec);

}  // namespace muse
