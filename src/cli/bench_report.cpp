// `muse bench-report`: the benchmark history (one `muse bench --json` result per line, tagged
// with commit, model and engine by scripts/bench-record) turned into a regression check and
// two plots: decode speed against model size under the memory roofline, and speed per commit.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "cli/args.h"
#include "cli/commands.h"
#include "util/error.h"
#include "util/json.h"
#include "util/svg_plot.h"

namespace muse {
namespace {

struct Record {
  std::string commit, engine, model;
  int threads = 0;
  double pp = 0, tg = 0, model_gb = 0, bandwidth_gbs = 0;
};

double number_or(const Json& j, const char* key, double fallback) {
  const Json* v = j.find(key);
  return v && v->is_number() ? v->as_number() : fallback;
}

std::vector<Record> read_history(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("cannot read ", path);
  std::vector<Record> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    Json j;
    try {
      j = Json::parse(line);
    } catch (const Error& e) {
      fail(path, ":", n, ": ", e.what());
    }
    if (!j.is_object() || !j.find("commit") || !j.find("model") || !j.find("tg_tps"))
      fail(path, ":", n, ": a record needs commit, model and tg_tps");
    Record r;
    r.commit = j.at("commit").as_string();
    r.model = j.at("model").as_string();
    r.engine = j.find("engine") ? j.at("engine").as_string() : "muse";
    r.threads = int(number_or(j, "threads", 0));
    r.pp = number_or(j, "pp_tps", NAN);  // a missing measurement is left out of medians
    r.tg = number_or(j, "tg_tps", NAN);
    r.model_gb = number_or(j, "model_bytes", 0) / 1e9;
    r.bandwidth_gbs = number_or(j, "read_bandwidth_gbs", 0);
    out.push_back(std::move(r));
  }
  return out;
}

double median(std::vector<double> v) {
  std::erase_if(v, [](double x) { return !std::isfinite(x) || x <= 0; });
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Medians of the repeated runs of one (commit, engine, model, threads).
struct Point {
  double pp = 0, tg = 0, model_gb = 0, bandwidth_gbs = 0;
};
using Key = std::tuple<std::string, std::string, int>;  // engine, model, threads

void write_file(const std::string& path, const std::string& text) {
  std::ofstream f(path);
  if (!f || !(f << text)) fail("cannot write ", path);
}

}  // namespace

int cmd_bench_report(const Argv& argv) {
  const Args a(argv, {"--history", "--svg-dir", "--threshold"}, {});
  const std::vector<Record> records = read_history(a.require("--history"));
  if (records.empty()) fail(a.get("--history"), " holds no records");
  const double threshold = a.get_double("--threshold", 15) / 100;
  if (threshold <= 0 || threshold >= 1) fail("--threshold is a percentage between 0 and 100");

  std::vector<std::string> commits;  // in the order they were recorded
  std::string latest_muse;           // the commit a regression is judged at
  for (const Record& r : records) {
    if (std::find(commits.begin(), commits.end(), r.commit) == commits.end())
      commits.push_back(r.commit);
    if (r.engine == "muse") latest_muse = r.commit;
  }
  std::map<std::pair<std::string, Key>, Point> points;
  {
    std::map<std::pair<std::string, Key>, std::vector<const Record*>> runs;
    for (const Record& r : records)
      runs[{r.commit, Key{r.engine, r.model, r.threads}}].push_back(&r);
    for (const auto& [k, rs] : runs) {
      std::vector<double> pp, tg, bw;
      for (const Record* r : rs) {
        pp.push_back(r->pp);
        tg.push_back(r->tg);
        if (r->bandwidth_gbs > 0) bw.push_back(r->bandwidth_gbs);
      }
      points[k] = {median(pp), median(tg), rs.front()->model_gb, median(bw)};
    }
  }
  auto at = [&](const std::string& commit, const Key& key) -> const Point* {
    const auto it = points.find({commit, key});
    return it == points.end() ? nullptr : &it->second;
  };
  std::set<Key> keys;
  for (const auto& [k, p] : points) keys.insert(k.second);

  // The regression check: Muse at each commit against the latest earlier commit that measured
  // the same model and threads. Where llama.cpp was measured at both commits too, the change is
  // that of Muse's speed relative to llama.cpp's in the same run, so the machine's own swings
  // (other tenants, a slower day) cancel.
  bool regressed = false;
  std::printf(
      "| model | threads | commit | pp tok/s | change | tg tok/s | change "
      "|\n|---|---|---|---|---|---|---|\n");
  for (const Key& key : keys) {
    if (std::get<0>(key) != "muse") continue;
    const Key reference{"llama.cpp", std::get<1>(key), std::get<2>(key)};
    const Point* last = nullptr;
    const Point* last_ref = nullptr;  // llama.cpp at last's commit
    for (const std::string& c : commits) {
      const Point* p = at(c, key);
      if (!p) continue;
      const Point* ref = at(c, reference);
      auto change = [&](double Point::*speed) -> std::string {
        const double now = p->*speed, before = last ? last->*speed : 0;
        if (!last || !(before > 0) || !(now > 0)) return "";
        const bool relative = ref && last_ref && ref->*speed > 0 && last_ref->*speed > 0;
        const double d =
            relative ? (now / (ref->*speed)) / (before / (last_ref->*speed)) - 1 : now / before - 1;
        char buf[64];
        std::snprintf(buf, sizeof buf, "%+.1f%%%s%s", 100 * d, relative ? " vs llama.cpp" : "",
                      d < -threshold ? " **slower**" : "");
        if (d < -threshold && c == latest_muse) regressed = true;
        return buf;
      };
      std::printf("| %s | %d | %s | %.1f | %s | %.1f | %s |\n", std::get<1>(key).c_str(),
                  std::get<2>(key), c.c_str(), p->pp, change(&Point::pp).c_str(), p->tg,
                  change(&Point::tg).c_str());
      last = p;
      last_ref = ref;
    }
  }

  if (a.has("--svg-dir")) {
    const std::string dir = a.get("--svg-dir");
    // Roofline: decode tok/s against model size at the latest commit; a step streams the
    // model, so tok/s <= bandwidth / bytes.
    PlotSpec roof;
    roof.title = "Decode speed against the memory roofline (latest commit)";
    roof.x_label = "model size (GB)";
    roof.y_label = "decode tok/s";
    roof.log_x = roof.log_y = true;
    std::map<std::string, PlotSeries> by_engine;
    std::vector<double> bandwidths, sizes;
    for (const Key& key : keys) {
      // Each engine's latest measurement of the model.
      const Point* p = nullptr;
      for (auto c = commits.rbegin(); c != commits.rend() && !p; ++c) p = at(*c, key);
      if (!p || p->model_gb <= 0) continue;
      PlotSeries& s = by_engine[std::get<0>(key) + " (" + std::to_string(std::get<2>(key)) +
                                (std::get<2>(key) == 1 ? " thread)" : " threads)")];
      s.x.push_back(p->model_gb);
      s.y.push_back(p->tg);
      sizes.push_back(p->model_gb);
      if (std::get<0>(key) == "muse" && p->bandwidth_gbs > 0)
        bandwidths.push_back(p->bandwidth_gbs);
    }
    if (!sizes.empty() && !bandwidths.empty()) {
      const double bw = median(bandwidths);
      const auto [lo, hi] = std::minmax_element(sizes.begin(), sizes.end());
      PlotSeries full, seventy;
      char name[80];
      std::snprintf(name, sizeof name, "roofline (%.0f GB/s)", bw);
      full.name = name;
      seventy.name = "70% of roofline";
      full.line = seventy.line = true;
      full.markers = seventy.markers = false;
      seventy.dashed = true;
      for (int i = 0; i <= 20; ++i) {
        const double x = *lo * 0.8 * std::pow(*hi * 1.25 / (*lo * 0.8), i / 20.0);
        full.x.push_back(x);
        full.y.push_back(bw / x);
        seventy.x.push_back(x);
        seventy.y.push_back(0.7 * bw / x);
      }
      roof.series.push_back(full);
      roof.series.push_back(seventy);
    }
    for (auto& [name, s] : by_engine) {
      s.name = name;
      roof.series.push_back(s);
    }
    write_file(dir + "/roofline.svg", render_svg(roof));
    // History: Muse's decode speed per model over the recorded commits.
    PlotSpec hist;
    hist.title = "Muse decode speed per commit";
    hist.x_label = "commit (order recorded: " + commits.front() + " .. " + commits.back() + ")";
    hist.y_label = "decode tok/s";
    for (const Key& key : keys) {
      if (std::get<0>(key) != "muse") continue;
      PlotSeries s;
      s.name = std::get<1>(key) + " t" + std::to_string(std::get<2>(key));
      s.line = true;
      for (size_t i = 0; i < commits.size(); ++i)
        if (const Point* p = at(commits[i], key)) {
          s.x.push_back(double(i));
          s.y.push_back(p->tg);
        }
      hist.series.push_back(s);
    }
    write_file(dir + "/history.svg", render_svg(hist));
    std::fprintf(stderr, "wrote %s/roofline.svg and %s/history.svg\n", dir.c_str(), dir.c_str());
  }
  if (regressed)
    std::fprintf(
        stderr,
        "bench-report: the latest commit is more than %.0f%% slower somewhere (marked above)\n",
        100 * threshold);
  return regressed ? 1 : 0;
}

}  // namespace muse
