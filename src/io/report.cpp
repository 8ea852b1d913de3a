#include "fsa/io/report.h"

#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using nlohmann::json;

namespace fsa::io {

namespace {

using OptDouble = std::optional<double>;

// ---------------------------------------------------------------------------
// metrics.json, read into plain structs with every type and length checked.

struct Epoch {
  int64_t epoch = 0;
  OptDouble lr, train_loss, train_acc, test_loss, test_acc, test_head, test_tail;
};

struct Phase {
  std::string key;    // "phase_i", "phase_iii", "test"
  std::string title;  // "Phase I", ...
  double top1 = 0;
  OptDouble head, tail, many, medium, few, loss, best_top1;
  std::optional<int64_t> best_epoch;
  std::string selected_on = "test";             // the split that chose best_epoch
  std::string mode;                             // Phase III: "online"/"offline"
  std::vector<OptDouble> per_class;             // fraction, nullopt: no test image
  std::vector<std::vector<int64_t>> confusion;  // [C][C] or empty
  std::vector<Epoch> history;
};

struct RunMetrics {
  std::vector<Phase> phases;
  std::vector<int64_t> class_counts;
  std::vector<std::string> class_names;
  std::vector<bool> head;  // empty: not recorded
  std::string dataset, model;
  OptDouble imbalance_factor, seconds;
  bool seconds_summed = false;  // seconds added up from the epochs, not measured
  int64_t num_classes() const { return int64_t(class_counts.size()); }
};

const char* type_name(const json& j) { return j.type_name(); }

// Reads values out of one metrics.json; every failure names the file and the
// dotted key.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw std::runtime_error(fmt::format("metrics file '{}': {} {}", file_, key, what));
  }

  double number(const json& j, const std::string& key) const {
    if (!j.is_number()) fail(key, fmt::format("must be a number, not {}", type_name(j)));
    return j.get<double>();
  }

  // Absent or null: nullopt.
  OptDouble optional_number(const json& parent, const char* name, const std::string& key) const {
    auto it = parent.find(name);
    if (it == parent.end() || it->is_null()) return std::nullopt;
    if (!it->is_number())
      fail(key, fmt::format("must be a number or null, not {}", type_name(*it)));
    return it->get<double>();
  }

  int64_t integer(const json& j, const std::string& key) const {
    if (!j.is_number_integer()) fail(key, fmt::format("must be an integer, not {}", type_name(j)));
    return j.get<int64_t>();
  }

  std::string string(const json& parent, const char* name, const std::string& key) const {
    auto it = parent.find(name);
    if (it == parent.end() || it->is_null()) return {};
    if (it->is_string()) return it->get<std::string>();
    if (it->is_number()) return it->dump();
    fail(key, fmt::format("must be a string, not {}", type_name(*it)));
  }

  const json& array(const json& j, const std::string& key) const {
    if (!j.is_array()) fail(key, fmt::format("must be an array, not {}", type_name(j)));
    return j;
  }

  const json& object(const json& j, const std::string& key) const {
    if (!j.is_object()) fail(key, fmt::format("must be an object, not {}", type_name(j)));
    return j;
  }

  void check_length(const json& j, size_t n, const std::string& key) const {
    if (j.size() != n) fail(key, fmt::format("has {} entries, expected {}", j.size(), n));
  }

 private:
  std::string file_;
};

std::vector<int64_t> read_counts(const Reader& r, const json& j, const std::string& key) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < r.array(j, key).size(); ++i) {
    out.push_back(r.integer(j[i], fmt::format("{}[{}]", key, i)));
    if (out.back() < 0) r.fail(fmt::format("{}[{}]", key, i), "must not be negative");
  }
  return out;
}

std::vector<std::string> read_names(const Reader& r, const json& j, const std::string& key) {
  std::vector<std::string> out;
  for (size_t i = 0; i < r.array(j, key).size(); ++i) {
    const auto& v = j[i];
    if (v.is_string()) {
      out.push_back(v.get<std::string>());
    } else if (v.is_number_integer()) {
      out.push_back(v.dump());
    } else {
      r.fail(fmt::format("{}[{}]", key, i), fmt::format("must be a string, not {}", type_name(v)));
    }
  }
  return out;
}

Phase read_phase(const Reader& r, const json& j, const std::string& key, const std::string& title,
                 size_t num_classes) {
  r.object(j, key);
  Phase p;
  p.key = key;
  p.title = title;
  if (!j.contains("top1")) r.fail(key, "has no 'top1'");
  p.top1 = r.number(j["top1"], key + ".top1");
  p.head = r.optional_number(j, "head", key + ".head");
  p.tail = r.optional_number(j, "tail", key + ".tail");
  p.many = r.optional_number(j, "many", key + ".many");
  p.medium = r.optional_number(j, "medium", key + ".medium");
  p.few = r.optional_number(j, "few", key + ".few");
  p.loss = r.optional_number(j, "loss", key + ".loss");
  p.best_top1 = r.optional_number(j, "best_top1", key + ".best_top1");
  if (j.contains("best_epoch") && !j["best_epoch"].is_null()) {
    p.best_epoch = r.integer(j["best_epoch"], key + ".best_epoch");
  }
  p.mode = r.string(j, "mode", key + ".mode");
  if (j.contains("best_selected_on")) {
    p.selected_on = r.string(j, "best_selected_on", key + ".best_selected_on");
  }
  if (!j.contains("per_class")) r.fail(key, "has no 'per_class'");
  const auto& pc = r.array(j["per_class"], key + ".per_class");
  r.check_length(pc, num_classes, key + ".per_class");
  for (size_t i = 0; i < pc.size(); ++i) {
    if (pc[i].is_null()) {
      p.per_class.emplace_back();
    } else {
      if (!pc[i].is_number()) {
        r.fail(fmt::format("{}.per_class[{}]", key, i),
               fmt::format("must be a number or null, not {}", type_name(pc[i])));
      }
      p.per_class.emplace_back(pc[i].get<double>());
    }
  }
  if (j.contains("confusion") && !j["confusion"].is_null()) {
    const auto k = key + ".confusion";
    const auto& rows = r.array(j["confusion"], k);
    r.check_length(rows, p.per_class.size(), k);
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto ki = fmt::format("{}[{}]", k, i);
      r.check_length(r.array(rows[i], ki), p.per_class.size(), ki);
      p.confusion.push_back(read_counts(r, rows[i], ki));
    }
  }
  if (j.contains("history") && !j["history"].is_null()) {
    const auto& h = r.array(j["history"], key + ".history");
    for (size_t i = 0; i < h.size(); ++i) {
      const auto k = fmt::format("{}.history[{}]", key, i);
      const auto& e = r.object(h[i], k);
      Epoch ep;
      ep.epoch = e.contains("epoch") ? r.integer(e["epoch"], k + ".epoch") : int64_t(i + 1);
      ep.lr = r.optional_number(e, "lr", k + ".lr");
      ep.train_loss = r.optional_number(e, "train_loss", k + ".train_loss");
      ep.train_acc = r.optional_number(e, "train_acc", k + ".train_acc");
      ep.test_loss = r.optional_number(e, "test_loss", k + ".test_loss");
      ep.test_acc = r.optional_number(e, "test_acc", k + ".test_acc");
      ep.test_head = r.optional_number(e, "test_head", k + ".test_head");
      ep.test_tail = r.optional_number(e, "test_tail", k + ".test_tail");
      p.history.push_back(ep);
    }
  }
  return p;
}

RunMetrics read_metrics(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("metrics file '{}' cannot be opened", path));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  json parsed;
  try {
    parsed = json::parse(text);
  } catch (const json::parse_error& e) {
    throw std::runtime_error(
        fmt::format("metrics file '{}' is not valid JSON: {}", path, e.what()));
  }
  const json& j = parsed;
  const Reader r(path);
  if (!j.is_object())
    r.fail("the top level", fmt::format("must be an object, not {}", j.type_name()));

  RunMetrics m;
  std::vector<std::pair<std::string, std::string>> present;  // key, title
  for (const auto& [key, title] :
       {std::pair{"phase_i", "Phase I"}, std::pair{"phase_iii", "Phase III"},
        std::pair{"decouple", "Decoupled classifier"}, std::pair{"test", "Test"}}) {
    if (j.contains(key) && !j.at(key).is_null()) present.emplace_back(key, title);
  }
  if (present.empty()) {
    r.fail("the top level", "has none of 'phase_i', 'phase_iii', 'decouple', 'test'");
  }
  for (const auto& [key, title] : present) r.object(j.at(key), key);

  // Run-level keys win; a single phase's own copies stand in for them.
  const auto find_key = [&](const char* name) -> std::pair<const json*, std::string> {
    if (j.contains(name) && !j.at(name).is_null()) return {&j.at(name), name};
    for (const auto& [key, title] : present) {
      const auto& pj = j.at(key);
      if (pj.contains(name) && !pj.at(name).is_null()) return {&pj.at(name), key + "." + name};
    }
    return {nullptr, name};
  };
  const auto [counts, counts_key] = find_key("class_counts");
  if (!counts) r.fail("the top level", "has no 'class_counts' (nor has any phase)");
  m.class_counts = read_counts(r, *counts, counts_key);
  const auto c = size_t(m.class_counts.size());
  if (c == 0) r.fail(counts_key, "is empty");
  for (const auto& [key, title] : present)
    m.phases.push_back(read_phase(r, j.at(key), key, title, c));
  const auto [names, names_key] = find_key("class_names");
  if (names) {
    m.class_names = read_names(r, *names, names_key);
    r.check_length(*names, c, names_key);
  } else {
    for (size_t i = 0; i < c; ++i) m.class_names.push_back(fmt::format("class {}", i));
  }
  if (j.contains("head_classes") && !j["head_classes"].is_null()) {
    const auto& h = r.array(j["head_classes"], "head_classes");
    r.check_length(h, c, "head_classes");
    for (size_t i = 0; i < c; ++i) {
      if (!h[i].is_boolean() && !h[i].is_number_integer()) {
        r.fail(fmt::format("head_classes[{}]", i),
               fmt::format("must be true or false, not {}", h[i].type_name()));
      }
      m.head.push_back(h[i].is_boolean() ? h[i].get<bool>() : h[i].get<int64_t>() != 0);
    }
  }
  m.dataset = r.string(j, "dataset", "dataset");
  m.model = r.string(j, "model", "model");
  m.imbalance_factor = r.optional_number(j, "imbalance_factor", "imbalance_factor");
  m.seconds = r.optional_number(j, "seconds", "seconds");
  if (!m.seconds) {
    double sum = 0;
    bool any = false;
    for (const auto& p : m.phases) {
      for (size_t i = 0; i < j[p.key].value("history", json::array()).size(); ++i) {
        const auto& e = j[p.key]["history"][i];
        if (e.contains("seconds") && e["seconds"].is_number()) {
          sum += e["seconds"].get<double>();
          any = true;
        }
      }
    }
    if (any) {
      m.seconds = sum;
      m.seconds_summed = true;
    }
  }
  return m;
}

// ---------------------------------------------------------------------------
// Small helpers.

void write_text(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + fmt::format(".tmp.{}", ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(fmt::format("cannot write '{}'", tmp.string()));
    out << text;
    out.flush();
    if (!out) {
      out.close();
      fs::remove(tmp);
      throw std::runtime_error(fmt::format("writing '{}' failed (disk full?)", path.string()));
    }
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) {
    fs::remove(tmp);
    throw std::runtime_error(
        fmt::format("cannot move '{}' into place: {}", path.string(), ec.message()));
  }
}

// The PNG signature followed by an IHDR chunk with a non-zero size.
bool is_png(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char b[24] = {};
  if (!in.read(reinterpret_cast<char*>(b), sizeof b)) return false;
  const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (!std::equal(sig, sig + 8, b) || std::string(b + 12, b + 16) != "IHDR") return false;
  const auto be32 = [&](int o) {
    return (uint32_t(b[o]) << 24) | (uint32_t(b[o + 1]) << 16) | (uint32_t(b[o + 2]) << 8) |
           uint32_t(b[o + 3]);
  };
  return be32(16) > 0 && be32(20) > 0;
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return out + "'";
}

// A string literal for a gnuplot script: single quotes, '' for a quote.
std::string gp_quote(const std::string& s) {
  std::string out = "'";
  for (char ch : s) out += ch == '\'' ? std::string("''") : std::string(1, ch);
  return out + "'";
}

// A class name as a plot label: at most 24 characters, and only characters
// from the scripts common fonts cover (Latin, Greek, Cyrillic): cairo draws a
// character no installed font has as a page-filling blot, so others become
// '?' (report.html keeps the full name). No double quote, which would end a
// data-file field.
std::string plot_label(const std::string& name) {
  constexpr size_t kMaxChars = 24;
  std::string out;
  size_t chars = 0;
  for (size_t i = 0; i < name.size();) {
    const auto b = static_cast<unsigned char>(name[i]);
    const size_t len = b < 0x80           ? 1
                       : (b >> 5) == 0x6  ? 2
                       : (b >> 4) == 0xe  ? 3
                       : (b >> 3) == 0x1e ? 4
                                          : 0;
    uint32_t cp = len == 1 ? b : len == 2 ? (b & 0x1f) : len == 3 ? (b & 0x0f) : (b & 0x07);
    bool valid = len > 0 && i + len <= name.size();
    for (size_t k = 1; valid && k < len; ++k) {
      const auto cont = static_cast<unsigned char>(name[i + k]);
      valid = (cont >> 6) == 0x2;
      cp = (cp << 6) | (cont & 0x3f);
    }
    if (++chars > kMaxChars) {
      out += "~";
      break;
    }
    if (!valid) {
      out += '?';
      ++i;
      continue;
    }
    if (cp == '"') {
      out += '\'';
    } else if (cp < 0x20 || cp == 0x7f) {
      out += ' ';
    } else if (cp < 0x530) {
      out.append(name, i, len);
    } else {
      out += '?';
    }
    i += len;
  }
  return out;
}

// A class name as one double-quoted field of a gnuplot data file.
std::string gp_field(const std::string& name) { return "\"" + plot_label(name) + "\""; }

std::string html_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

// Accuracy as a percentage for tables and data files; "-" / "?" when absent.
std::string pct(OptDouble v) { return v ? fmt::format("{:.2f}", 100.0 * *v) : "&ndash;"; }
std::string dat(OptDouble v) {
  return v && std::isfinite(*v) ? fmt::format("{:.4f}", 100.0 * *v) : "?";
}

std::string format_duration(double s) {
  if (s < 60) return fmt::format("{:.1f} s", s);
  const auto total = int64_t(std::llround(s));
  if (total < 3600) return fmt::format("{} min {:02} s", total / 60, total % 60);
  return fmt::format("{} h {:02} min", total / 3600, (total % 3600) / 60);
}

std::string format_number(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return fmt::format("{}", int64_t(v));
  return fmt::format("{:g}", v);
}

// Thousands separated by a thin space, for image counts.
std::string group_digits(int64_t v) {
  std::string s = std::to_string(v), out;
  const int n = int(s.size());
  for (int i = 0; i < n; ++i) {
    out += s[i];
    if ((n - i - 1) % 3 == 0 && i != n - 1) out += "&#8201;";
  }
  return out;
}

const char* shot_group(int64_t n) { return n > 100 ? "many" : (n >= 20 ? "medium" : "few"); }

// Classes by training-set size, descending; ties: lower index first (METHOD.md).
std::vector<int64_t> size_order(const std::vector<int64_t>& counts) {
  std::vector<int64_t> order(counts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return counts[a] > counts[b]; });
  return order;
}

constexpr int64_t kMaxLabelledClasses = 50;  // axis labels beyond this are unreadable
constexpr int64_t kMaxBarClasses = 200;      // bars beyond this are under a pixel wide
constexpr int64_t kBins = 40;                // rank bins of the mean line drawn above that
constexpr int64_t kMaxCellValues = 20;       // print percentages in confusion cells up to this

// Phase I light, Phase III dark (the eye reads dark as "after"), test purple.
std::string phase_color(const std::string& key) {
  return key == "phase_i" ? "#9ecae1" : (key == "phase_iii" ? "#2166ac" : "#6a51a3");
}
const char* const kCountColor = "#e6550d";

// ---------------------------------------------------------------------------
// gnuplot inputs: one data file and one script per image.

// Scripts and data live in <out>/plot_data and name files relative to <out>,
// so a run folder can be moved and its plots redrawn there with
// `gnuplot plot_data/<name>.gp`; write_report sets `outfile` to draw into a
// temporary file first.
constexpr const char* kPlotDir = "plot_data";

struct Plot {
  std::string image;                // file name in out_dir
  std::string script;               // file name in out_dir/plot_data
  std::vector<std::string> inputs;  // script and data files, relative to out_dir
};

std::string set_output(const std::string& image) {
  return fmt::format("if (!exists('outfile')) outfile = {}\nset output outfile\n", gp_quote(image));
}

std::string terminal(int width, int height) {
  // Class names are UTF-8; without the encoding gnuplot garbles non-ASCII ones.
  return fmt::format(
      "set encoding utf8\n"
      "set terminal pngcairo noenhanced size {},{} font 'DejaVu Sans,10' background '#ffffff'\n",
      width, height);
}

Plot per_class_plot(const RunMetrics& m, const std::vector<int64_t>& order, const fs::path& out) {
  const int64_t c = m.num_classes();
  const std::string data = std::string(kPlotDir) + "/per_class.dat";
  std::string d =
      "# classes ordered by training-set size (descending)\n# rank class name train_images";
  for (const auto& p : m.phases) d += " " + p.key + "_top1_pct";
  d += "\n";
  for (int64_t rank = 0; rank < c; ++rank) {
    const auto k = order[rank];
    d += fmt::format("{} {} {} {}", rank, k, gp_field(m.class_names[k]),
                     m.class_counts[k] > 0 ? std::to_string(m.class_counts[k]) : "?");
    for (const auto& p : m.phases) d += " " + dat(p.per_class[k]);
    d += "\n";
  }
  write_text(out / data, d);
  Plot plot{"per_class_accuracy.png", "per_class.gp", {data}};

  // Beyond kMaxBarClasses a bar per class is noise: each class becomes a dot
  // and the phases are compared by their mean over bins of neighbouring ranks.
  const bool bars = c <= kMaxBarClasses;
  const std::string binned = std::string(kPlotDir) + "/per_class_binned.dat";
  if (!bars) {
    std::string b =
        "# mean top-1 (%) over bins of classes ranked by training-set size\n"
        "# mean_rank";
    for (const auto& p : m.phases) b += " " + p.key + "_top1_pct";
    b += "\n";
    const int64_t width = (c + kBins - 1) / kBins;
    for (int64_t lo = 0; lo < c; lo += width) {
      const int64_t hi = std::min(c, lo + width);
      b += fmt::format("{:.1f}", (lo + hi - 1) / 2.0);
      for (const auto& p : m.phases) {
        double sum = 0;
        int64_t n = 0;
        for (int64_t r = lo; r < hi; ++r) {
          if (const auto v = p.per_class[order[r]]; v && std::isfinite(*v)) sum += *v, ++n;
        }
        b += " " + dat(n ? OptDouble(sum / double(n)) : std::nullopt);
      }
      b += "\n";
    }
    write_text(out / binned, b);
    plot.inputs.push_back(binned);
  }

  const bool labelled = c <= kMaxLabelledClasses;
  const int width =
      labelled ? int(std::clamp<int64_t>(220 + c * 34 * int64_t(m.phases.size()), 900, 2000))
               : 1400;
  const int height = labelled ? 620 : 560;
  const int64_t max_count = *std::max_element(m.class_counts.begin(), m.class_counts.end());
  int64_t min_count = max_count;
  for (auto n : m.class_counts)
    if (n > 0) min_count = std::min(min_count, n);

  std::string s = terminal(width, height);
  s += set_output("per_class_accuracy.png");
  s += "set datafile missing '?'\n";
  s += "set title 'Per-class top-1 accuracy (classes ordered by training-set size)' font ',12'\n";
  s += "set style fill solid 0.95 noborder\n";
  s += "set key outside bottom center horizontal reverse Left samplen 2 width 2\n";
  s += "set ylabel 'top-1 accuracy (%)'\nset yrange [0:100]\nset ytics 0,10,100 nomirror\n";
  s += "set grid ytics lc rgb '#e0e0e0' lt 1\n";
  s += "set y2label 'training images (log scale)'\nset logscale y2\nset y2tics nomirror\n";
  s += "set format y2 '%.0f'\n";
  s += fmt::format("set y2range [{}:{}]\n", std::max(0.5, min_count / 2.0), max_count * 2.0);
  s += fmt::format("set xrange [-0.6:{}]\n", c - 0.4);
  s += "set border 11\n";
  if (labelled) {
    s += "set xtics rotate by 45 right nomirror scale 0\n";
  } else {
    s += "set xlabel 'classes, ranked by training-set size'\nset xtics nomirror out\n";
    s += "set bmargin 6\n";  // room for the key below the axis label
  }
  // The head/tail boundary, when the head is a prefix of the size order.
  if (!m.head.empty()) {
    int64_t h = 0;
    while (h < c && m.head[order[h]]) ++h;
    bool prefix = true;
    for (int64_t i = h; i < c; ++i) prefix = prefix && !m.head[order[i]];
    if (prefix && h > 0 && h < c) {
      s += fmt::format("set arrow from {0},graph 0 to {0},graph 1 nohead dt 2 lc rgb '#555555'\n",
                       h - 0.5);
      s += fmt::format("set label 'head ' at {},graph 0.97 right tc rgb '#555555'\n", h - 0.5);
      s += fmt::format("set label ' tail' at {},graph 0.97 left tc rgb '#555555'\n", h - 0.5);
    }
  }
  // A class without test images has no accuracy: say so where its bar
  // would stand, so that the gap is not read as 0%.
  if (bars) {
    for (int64_t rank = 0; rank < c; ++rank) {
      const bool measured = std::any_of(m.phases.begin(), m.phases.end(), [&](const Phase& p) {
        return p.per_class[order[rank]].has_value();
      });
      if (!measured) {
        s += fmt::format(
            "set label 'no test images' at {},2 left rotate by 90 font ',8' "
            "tc rgb '#777777'\n",
            rank);
      }
    }
  }
  const auto n = double(m.phases.size());
  const double group = n == 1 ? 0.6 : 0.8;
  const double bar = group / n;
  s += fmt::format("set boxwidth {} absolute\n", bar);
  const auto file = gp_quote(data);
  std::vector<std::string> parts;
  for (size_t i = 0; i < m.phases.size(); ++i) {
    const auto color = phase_color(m.phases[i].key);
    const auto title = gp_quote(m.phases[i].title);
    if (bars) {
      const double offset = -group / 2 + bar * (i + 0.5);
      parts.push_back(fmt::format("{} using ($1{:+.4f}):{}{} with boxes lc rgb '{}' title {}", file,
                                  offset, 5 + i, labelled && i == 0 ? ":xtic(3)" : "", color,
                                  title));
    } else {
      // '#AARRGGBB': AA is the transparency.
      parts.push_back(fmt::format("{} using 1:{} with points pt 7 ps 0.35 lc rgb '#90{}' notitle",
                                  file, 5 + i, color.substr(1)));
      parts.push_back(
          fmt::format("{} using 1:{} with linespoints lw 2.5 pt 7 ps 0.6 lc rgb '{}' "
                      "title {}",
                      gp_quote(binned), 2 + i, color,
                      gp_quote(fmt::format("{} (mean of {} ranks)", m.phases[i].title,
                                           (c + kBins - 1) / kBins))));
    }
  }
  parts.push_back(fmt::format("{} using 1:4 axes x1y2 with {} lc rgb '{}' title 'training images'",
                              file, c <= 100 ? "linespoints lw 2 pt 7 ps 1" : "lines lw 2",
                              kCountColor));
  s += "plot ";
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? ", \\\n     " : "") + parts[i];
  s += "\nunset output\n";
  write_text(out / kPlotDir / "per_class.gp", s);
  plot.inputs.push_back(std::string(kPlotDir) + "/per_class.gp");
  return plot;
}

Plot confusion_plot(const RunMetrics& m, const Phase& p, const std::vector<int64_t>& order,
                    const fs::path& out) {
  const int64_t c = m.num_classes();
  const auto name = "confusion_" + p.key;
  const std::string data = std::string(kPlotDir) + "/" + name + ".dat";
  std::string d;
  // Row-normalised, rows and columns in size order; gnuplot's "matrix" reads
  // file rows as y and columns as x.
  std::vector<std::vector<double>> frac(c, std::vector<double>(c, 0.0));
  for (int64_t r = 0; r < c; ++r) {
    const auto& row = p.confusion[order[r]];
    const double total = double(std::accumulate(row.begin(), row.end(), int64_t(0)));
    for (int64_t k = 0; k < c; ++k) {
      frac[r][k] = total > 0 ? double(row[order[k]]) / total : 0.0;
      d += fmt::format("{}{:.6f}", k ? " " : "", frac[r][k]);
    }
    d += "\n";
  }
  write_text(out / data, d);
  const bool labelled = c <= kMaxLabelledClasses;
  const bool values = c <= kMaxCellValues;
  const std::string cells = std::string(kPlotDir) + "/" + name + "_cells.dat";
  if (values) {
    std::string v = "# predicted(x) true(y) fraction\n";
    for (int64_t r = 0; r < c; ++r) {
      for (int64_t k = 0; k < c; ++k) {
        if (frac[r][k] >= 0.005) v += fmt::format("{} {} {:.6f}\n", k, r, frac[r][k]);
      }
    }
    write_text(out / cells, v);
  }
  const int side = labelled ? int(std::clamp<int64_t>(260 + c * 40, 640, 1400)) : 1000;
  std::string s = terminal(side + 120, side);
  s += set_output(name + ".png");
  s += fmt::format("set title {} font ',12'\n",
                   gp_quote(fmt::format("Confusion matrix, {} (row-normalised; classes by "
                                        "training-set size)",
                                        p.title)));
  s += "set xlabel 'predicted class'\nset ylabel 'true class'\n";
  s += fmt::format("set xrange [-0.5:{0}]\nset yrange [{0}:-0.5]\n", c - 0.5);
  s += "set size ratio -1\nset tics out nomirror\nset cbrange [0:1]\n";
  s += "set cblabel 'fraction of the true class'\nset cbtics 0,0.2,1\n";
  s += "set palette defined (0 '#ffffff', 0.1 '#deebf7', 0.3 '#9ecae1', 0.6 '#3182bd', "
       "1 '#08306b')\n";
  if (labelled) {
    std::string tics;
    for (int64_t r = 0; r < c; ++r) {
      tics +=
          fmt::format("{}{} {}", r ? ", " : "", gp_quote(plot_label(m.class_names[order[r]])), r);
    }
    s += fmt::format("set xtics ({}) rotate by 45 right\n", tics);
    s += fmt::format("set ytics ({})\n", tics);
  } else {
    s += "set xtics\nset ytics\n";
  }
  s += fmt::format("plot {} matrix with image notitle", gp_quote(data));
  if (values) {
    const auto f = gp_quote(cells);
    s += fmt::format(
        ", \\\n     {0} using 1:2:($3 < 0.5 ? sprintf('%.0f', 100*$3) : '') with labels "
        "tc rgb '#222222' notitle, \\\n     {0} using 1:2:($3 >= 0.5 ? sprintf('%.0f', "
        "100*$3) : '') with labels tc rgb '#ffffff' notitle",
        f);
  }
  s += "\nunset output\n";
  write_text(out / kPlotDir / (name + ".gp"), s);
  Plot plot{name + ".png", name + ".gp", {data, std::string(kPlotDir) + "/" + name + ".gp"}};
  if (values) plot.inputs.push_back(cells);
  return plot;
}

Plot curves_plot(const Phase& p, const fs::path& out) {
  const auto name = "curves_" + p.key;
  const std::string data = std::string(kPlotDir) + "/" + name + ".dat";
  std::string d =
      "# epoch lr train_loss test_loss train_acc_pct test_acc_pct test_head_pct test_tail_pct\n";
  auto num = [](OptDouble v) { return v && std::isfinite(*v) ? fmt::format("{:.6g}", *v) : "?"; };
  bool any_head = false, any_tail = false, log_lr = true;
  double lr_min = 0, lr_max = 0;
  bool first = true;
  for (const auto& e : p.history) {
    d += fmt::format("{} {} {} {} {} {} {} {}\n", e.epoch, num(e.lr), num(e.train_loss),
                     num(e.test_loss), dat(e.train_acc), dat(e.test_acc), dat(e.test_head),
                     dat(e.test_tail));
    any_head = any_head || e.test_head.has_value();
    any_tail = any_tail || e.test_tail.has_value();
    if (e.lr) {
      if (*e.lr <= 0) log_lr = false;
      lr_min = first ? *e.lr : std::min(lr_min, *e.lr);
      lr_max = first ? *e.lr : std::max(lr_max, *e.lr);
      first = false;
    }
  }
  log_lr = log_lr && !first && lr_max > 20 * lr_min;
  write_text(out / data, d);
  const int64_t e0 = p.history.front().epoch, e1 = p.history.back().epoch;
  const bool points = p.history.size() <= 40;
  const std::string style = points ? "linespoints pt 7 ps 0.6" : "lines";
  const auto f = gp_quote(data);

  std::string s = terminal(960, 960);
  s += set_output(name + ".png");
  s += "set datafile missing '?'\n";
  s += fmt::format("set multiplot layout 3,1 title {} font ',12'\n",
                   gp_quote(fmt::format("Training curves, {}", p.title)));
  s += "set grid lc rgb '#e0e0e0' lt 1\n";
  s += "set key outside right top reverse Left samplen 2 width 1\n";
  s += "set lmargin 12\nset rmargin 20\n";
  s += fmt::format("set xrange [{}:{}]\n", e1 > e0 ? double(e0) : e0 - 0.5,
                   e1 > e0 ? double(e1) : e1 + 0.5);
  s += e1 - e0 <= 20 ? "set xtics 1 nomirror\n" : "set xtics nomirror\n";
  s += "set ytics nomirror\nset ylabel 'loss'\n";
  s += fmt::format(
      "plot {0} using 1:3 with {1} lw 2 lc rgb '#636363' title 'train', \\\n"
      "     {0} using 1:4 with {1} lw 2 lc rgb '#2166ac' title 'test'\n",
      f, style);
  s += "set ylabel 'top-1 accuracy (%)'\nset yrange [0:100]\n";
  if (p.best_epoch && p.best_top1) {
    s += fmt::format("set arrow 1 from {0},graph 0 to {0},graph 1 nohead dt 2 lc rgb '#888888'\n",
                     *p.best_epoch);
    const bool right_half = 2 * (*p.best_epoch - e0) > e1 - e0;
    s += fmt::format("set label 1 {} at {},graph 0.06 {} offset {},0 tc rgb '#555555'\n",
                     gp_quote(fmt::format("best on {} @ {}: test {:.2f}%", p.selected_on,
                                          *p.best_epoch, 100 * *p.best_top1)),
                     *p.best_epoch, right_half ? "right" : "left", right_half ? -0.5 : 0.5);
  }
  s += fmt::format(
      "plot {0} using 1:5 with {1} lw 2 lc rgb '#636363' title 'train', \\\n"
      "     {0} using 1:6 with {1} lw 2 lc rgb '#2166ac' title 'test'",
      f, style);
  if (any_head) {
    s += fmt::format(
        ", \\\n     {} using 1:7 with lines lw 1.5 dt 2 lc rgb '#4daf4a' "
        "title 'test, head'",
        f);
  }
  if (any_tail) {
    s += fmt::format(
        ", \\\n     {} using 1:8 with lines lw 1.5 dt 2 lc rgb '#e6550d' "
        "title 'test, tail'",
        f);
  }
  s += "\nunset arrow 1\nunset label 1\nset autoscale y\n";
  s += "set ylabel 'learning rate'\nset xlabel 'epoch'\nset format y '%g'\n";
  if (log_lr) s += "set logscale y\n";
  s += fmt::format("plot {} using 1:2 with {} lw 2 lc rgb '#6a51a3' title 'lr'\n", f,
                   p.history.size() == 1 ? "points pt 7" : (points ? "steps" : "lines"));
  s += "unset multiplot\nunset output\n";
  write_text(out / kPlotDir / (name + ".gp"), s);
  return {name + ".png", name + ".gp", {data, std::string(kPlotDir) + "/" + name + ".gp"}};
}

// Runs one kept script from `out`, drawing into `outfile` (relative to `out`);
// returns an empty string on success, else why not. Sets *not_found when the
// program itself cannot be run, so that the other plots are not tried.
std::string run_gnuplot(const std::string& program, const fs::path& out, const std::string& script,
                        const std::string& outfile, bool* not_found) {
  // The command runs in `out`; a relative path to the program must survive that.
  std::string prog = program;
  if (prog.find('/') != std::string::npos) prog = fs::absolute(prog).string();
  const auto cmd = fmt::format("cd {} && {} -e {} {} </dev/null 2>&1", shell_quote(out.string()),
                               shell_quote(prog), shell_quote("outfile=" + gp_quote(outfile)),
                               shell_quote(std::string(kPlotDir) + "/" + script));
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return "cannot start a shell to run gnuplot";
  std::string log;
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof buf, pipe)) log.append(buf, n);
  const int status = ::pclose(pipe);
  const int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code == 127 || code == 126) {
    *not_found = true;
    return fmt::format("gnuplot could not be run ('{}'); install gnuplot-nox", program);
  }
  if (code != 0) {
    while (!log.empty() && std::isspace(static_cast<unsigned char>(log.back()))) log.pop_back();
    if (log.size() > 600) log = "..." + log.substr(log.size() - 600);
    return fmt::format("gnuplot failed (exit {}) on {}/{}: {}", code, kPlotDir, script, log);
  }
  return {};
}

// ---------------------------------------------------------------------------
// report.html

const char* const kCss = R"css(
:root { --ink:#1d2733; --muted:#5b6775; --line:#dfe4ea; --zebra:#f6f8fa; --accent:#2166ac;
        --up:#1a7f37; --down:#cf222e; --bar:#dbe7f5; }
* { box-sizing: border-box; }
body { margin:0; background:#eef1f4; color:var(--ink);
       font:15px/1.5 -apple-system, "Segoe UI", "DejaVu Sans", Roboto, Helvetica, Arial, sans-serif; }
main { max-width:1160px; margin:0 auto; padding:28px 24px 48px; }
header { background:#fff; border:1px solid var(--line); border-radius:10px; padding:20px 24px;
         border-top:4px solid var(--accent); }
h1 { margin:0 0 4px; font-size:24px; }
h1 small { color:var(--muted); font-weight:normal; font-size:15px; margin-left:8px; }
h2 { font-size:18px; margin:32px 0 10px; }
.facts { display:grid; grid-template-columns:repeat(auto-fit, minmax(150px, 1fr)); gap:10px 24px;
         margin:14px 0 0; }
.facts div { border-left:3px solid var(--line); padding-left:10px; }
.facts div.wide { grid-column:span 2; }
.facts dt { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.facts dd { margin:0; font-size:17px; font-weight:600; }
section { background:#fff; border:1px solid var(--line); border-radius:10px; padding:4px 24px 20px;
          margin-top:20px; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { padding:6px 10px; border-bottom:1px solid var(--line); text-align:left; white-space:nowrap; }
th { font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted);
     border-bottom:2px solid var(--line); }
tbody tr:nth-child(even) { background:var(--zebra); }
td.num, th.num { text-align:right; }
td.up { color:var(--up); } td.down { color:var(--down); }
td.main { font-weight:600; }
.tag { display:inline-block; padding:0 7px; border-radius:9px; font-size:12px; }
.tag.head { background:#e3eefa; color:#1b4f8a; } .tag.tail { background:#fdecdf; color:#9a3d07; }
.metrics { max-width:760px; }
.scroll { max-height:640px; overflow:auto; border:1px solid var(--line); border-radius:6px; }
.scroll thead th { position:sticky; top:0; background:#fff; }
figure { margin:16px 0 0; }
figure img { display:block; max-width:100%; height:auto; border:1px solid var(--line); border-radius:6px; }
figcaption { color:var(--muted); font-size:13px; margin-top:6px; }
.pair { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:16px; }
.note { background:#fff8e1; border:1px solid #f0d58c; border-radius:8px; padding:10px 14px;
        margin-top:20px; }
.note ul { margin:4px 0 0; padding-left:20px; }
.missing { color:var(--muted); font-style:italic; border:1px dashed var(--line); border-radius:6px;
           padding:18px; text-align:center; }
footer { color:var(--muted); font-size:12px; margin-top:28px; text-align:center; }
)css";

std::string change_cell(OptDouble a, OptDouble b) {
  if (!a || !b) return "<td class=\"num\">&ndash;</td>";
  const double d = 100.0 * (*b - *a);
  const char* cls = d > 0.005 ? " up" : (d < -0.005 ? " down" : "");
  return fmt::format("<td class=\"num{}\">{:+.2f}</td>", cls, d);
}

// An accuracy cell with a faint bar behind the number.
std::string acc_cell(OptDouble v) {
  if (!v) return "<td class=\"num\">&ndash;</td>";
  const double w = std::clamp(100.0 * *v, 0.0, 100.0);
  return fmt::format(
      "<td class=\"num\" style=\"background:linear-gradient(90deg,var(--bar) "
      "{0:.1f}%,transparent {0:.1f}%)\">{1}</td>",
      w, pct(v));
}

std::string image_html(const std::string& file, const std::string& alt, const std::string& caption,
                       const std::vector<MissingImage>& missing) {
  for (const auto& m : missing) {
    if (m.file == file) {
      return fmt::format("<figure><div class=\"missing\">{} was not drawn: {}</div></figure>\n",
                         html_escape(file), html_escape(m.reason));
    }
  }
  return fmt::format(
      "<figure><img src=\"{}\" alt=\"{}\" loading=\"eager\"><figcaption>{}</figcaption>"
      "</figure>\n",
      html_escape(file), html_escape(alt), caption);
}

std::string render_html(const RunMetrics& m, const std::vector<int64_t>& order,
                        const std::string& run_name, const std::vector<std::string>& planned,
                        const ReportFiles& files) {
  const int64_t c = m.num_classes();
  const Phase* first = &m.phases.front();
  const Phase* last = &m.phases.back();
  const bool compare = m.phases.size() > 1;
  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
  h += fmt::format("<title>fsa report: {}</title>\n", html_escape(run_name));
  h += fmt::format("<style>{}</style>\n</head>\n<body>\n<main>\n", kCss);

  // Header with the facts of the run.
  h += "<header>\n";
  h += fmt::format("<h1>{}<small>{}</small></h1>\n",
                   html_escape(m.dataset.empty() ? "fsa run" : m.dataset), html_escape(run_name));
  h += "<dl class=\"facts\">\n";
  auto fact = [&](const std::string& k, const std::string& v, bool wide = false) {
    h += fmt::format("<div{}><dt>{}</dt><dd>{}</dd></div>\n", wide ? " class=\"wide\"" : "", k, v);
  };
  if (!m.dataset.empty()) fact("dataset", html_escape(m.dataset));
  if (!m.model.empty()) fact("model", html_escape(m.model));
  if (m.imbalance_factor) fact("imbalance factor", html_escape(format_number(*m.imbalance_factor)));
  fact("classes", std::to_string(c));
  fact("training images",
       group_digits(std::accumulate(m.class_counts.begin(), m.class_counts.end(), int64_t(0))));
  if (!m.head.empty()) {
    const auto heads = std::count(m.head.begin(), m.head.end(), true);
    fact("head / tail classes", fmt::format("{} / {}", heads, c - heads));
  }
  if (m.seconds) {
    fact(m.seconds_summed ? "training time" : "run time", html_escape(format_duration(*m.seconds)));
  }
  std::string phases;
  for (const auto& p : m.phases) {
    phases += (phases.empty() ? "" : ", ") + p.title + (p.mode.empty() ? "" : " (" + p.mode + ")");
  }
  fact("phases", html_escape(phases), /*wide=*/true);
  h += "</dl>\n</header>\n";

  // What is left out, and why.
  std::vector<std::string> notes = files.notes;
  for (const auto& x : files.missing) notes.push_back(x.file + " was not drawn: " + x.reason);
  if (!notes.empty()) {
    h += "<div class=\"note\"><strong>Left out of this report</strong><ul>\n";
    for (const auto& n : notes) h += "<li>" + html_escape(n) + "</li>\n";
    h += "</ul></div>\n";
  }

  // The metric table.
  h += "<section>\n<h2>Top-1 accuracy (%)</h2>\n<table "
       "class=\"metrics\">\n<thead><tr><th>group</th>";
  for (const auto& p : m.phases) h += "<th class=\"num\">" + html_escape(p.title) + "</th>";
  if (compare) h += "<th class=\"num\">change (pp)</th>";
  h += "</tr></thead>\n<tbody>\n";
  auto metric_row = [&](const std::string& name, OptDouble Phase::*field, bool main_row = false) {
    h += fmt::format("<tr><td{}>{}</td>", main_row ? " class=\"main\"" : "", name);
    for (const auto& p : m.phases) {
      h += fmt::format("<td class=\"num{}\">{}</td>", main_row ? " main" : "", pct(p.*field));
    }
    if (compare) h += change_cell(first->*field, last->*field);
    h += "</tr>\n";
  };
  {
    h += "<tr><td class=\"main\">overall</td>";
    for (const auto& p : m.phases) h += "<td class=\"num main\">" + pct(p.top1) + "</td>";
    if (compare) h += change_cell(first->top1, last->top1);
    h += "</tr>\n";
  }
  metric_row("head classes", &Phase::head);
  metric_row("tail classes", &Phase::tail);
  metric_row("many-shot (&gt;100 images)", &Phase::many);
  metric_row("medium-shot (20&ndash;100)", &Phase::medium);
  metric_row("few-shot (&lt;20)", &Phase::few);
  // The best epoch is chosen on the validation split when the run had one,
  // else on the test split (an optimistic figure, so the table says which);
  // the rows above are the final epoch.
  metric_row("test top-1 at the best epoch", &Phase::best_top1);
  {
    h += "<tr><td>best epoch (chosen on)</td>";
    for (const auto& p : m.phases) {
      h += "<td class=\"num\">" +
           (p.best_epoch ? fmt::format("{} ({})", *p.best_epoch, p.selected_on) : "&ndash;") +
           "</td>";
    }
    if (compare) h += "<td></td>";
    h += "</tr>\n<tr><td>test loss</td>";
    for (const auto& p : m.phases) {
      h += "<td class=\"num\">" + (p.loss ? fmt::format("{:.4f}", *p.loss) : "&ndash;") + "</td>";
    }
    if (compare) {
      h += first->loss && last->loss
               ? fmt::format("<td class=\"num\">{:+.4f}</td>", *last->loss - *first->loss)
               : "<td></td>";
    }
    h += "</tr>\n";
  }
  h += "</tbody>\n</table>\n</section>\n";

  auto has = [&](const std::string& f) {
    return std::find(planned.begin(), planned.end(), f) != planned.end();
  };
  // Figures.
  h += "<section>\n<h2>Per-class accuracy</h2>\n";
  h += image_html("per_class_accuracy.png", "Per-class top-1 accuracy",
                  "Bars: per-class top-1 of each phase; line: training images per class (right "
                  "axis, log scale). Classes ordered by training-set size.",
                  files.missing);
  h += "</section>\n";
  std::vector<const Phase*> with_confusion, with_curves;
  for (const auto& p : m.phases) {
    if (has("confusion_" + p.key + ".png")) with_confusion.push_back(&p);
    if (has("curves_" + p.key + ".png")) with_curves.push_back(&p);
  }
  if (!with_confusion.empty()) {
    h += "<section>\n<h2>Confusion matrices</h2>\n<div class=\"pair\">\n";
    for (const auto* p : with_confusion) {
      h += image_html("confusion_" + p->key + ".png", "Confusion matrix, " + p->title,
                      html_escape(p->title) +
                          ": rows are true classes, columns predicted "
                          "ones; each row sums to 1.",
                      files.missing);
    }
    h += "</div>\n</section>\n";
  }
  if (!with_curves.empty()) {
    h += "<section>\n<h2>Training curves</h2>\n<div class=\"pair\">\n";
    for (const auto* p : with_curves) {
      h += image_html("curves_" + p->key + ".png", "Training curves, " + p->title,
                      html_escape(p->title) + ": loss, top-1 accuracy and learning rate per epoch.",
                      files.missing);
    }
    h += "</div>\n</section>\n";
  }

  if (!files.contact_sheets.empty()) {
    h += "<section>\n<h2>Class activation maps</h2>\n";
    h += "<p>Grad-CAM of each image's true class over the image (jet colours, 40% opacity), "
         "with the predicted class; drawn by <code>fsa visualize</code>.</p>\n";
    for (const auto& sheet : files.contact_sheets) {
      h += image_html(sheet, "Class activation maps: " + sheet, html_escape(sheet), files.missing);
    }
    h += "</section>\n";
  }

  // The per-class table, in size order.
  h += "<section>\n<h2>Per class</h2>\n";
  h += "<p>Top-1 accuracy (%) on the test set; classes ordered by training-set size.</p>\n";
  h += "<div class=\"scroll\">\n<table class=\"classes\">\n<thead><tr><th class=\"num\">#</th>"
       "<th>class</th><th class=\"num\">training images</th><th>group</th><th>shots</th>";
  for (const auto& p : m.phases) h += "<th class=\"num\">" + html_escape(p.title) + "</th>";
  if (compare) h += "<th class=\"num\">change (pp)</th>";
  h += "</tr></thead>\n<tbody>\n";
  for (int64_t rank = 0; rank < c; ++rank) {
    const auto k = order[rank];
    h += fmt::format(
        "<tr data-class=\"{}\"><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}"
        "</td>",
        k, k, html_escape(m.class_names[k]), m.class_counts[k]);
    if (m.head.empty()) {
      h += "<td>&ndash;</td>";
    } else {
      h += m.head[k] ? "<td><span class=\"tag head\">head</span></td>"
                     : "<td><span class=\"tag tail\">tail</span></td>";
    }
    h += fmt::format("<td>{}</td>", shot_group(m.class_counts[k]));
    for (const auto& p : m.phases) h += acc_cell(p.per_class[k]);
    if (compare) h += change_cell(first->per_class[k], last->per_class[k]);
    h += "</tr>\n";
  }
  h += "</tbody>\n</table>\n</div>\n</section>\n";
  h += "<footer>Written by fsa from metrics.json. Plots drawn with gnuplot; their data and "
       "scripts are in plot_data/.</footer>\n";
  h += "</main>\n</body>\n</html>\n";
  return h;
}

/// contact_<c>_<name>.png files in `dir` that are PNGs, ordered by class c.
std::vector<std::string> contact_sheets_in(const fs::path& dir) {
  std::vector<std::pair<long, std::string>> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("contact_", 0) != 0 || entry.path().extension() != ".png") continue;
    if (!is_png(entry.path())) continue;
    char* end = nullptr;
    const long c = std::strtol(name.c_str() + 8, &end, 10);
    found.emplace_back(end == name.c_str() + 8 ? -1 : c, name);
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> names;
  for (auto& f : found) names.push_back(std::move(f.second));
  return names;
}

}  // namespace

ReportFiles write_report(const std::string& run_dir, const ReportOptions& options) {
  const fs::path metrics_path = fs::path(run_dir) / "metrics.json";
  const RunMetrics m = read_metrics(metrics_path.string());
  const fs::path out = options.out_dir.empty() ? fs::path(run_dir) : fs::path(options.out_dir);
  const fs::path data_dir = out / "plot_data";
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) {
    throw std::runtime_error(
        fmt::format("cannot create report folder '{}': {}", data_dir.string(), ec.message()));
  }
  const auto order = size_order(m.class_counts);
  ReportFiles files;
  files.html = (out / "report.html").string();

  // Which images this run has data for.
  std::vector<std::string> planned{"per_class_accuracy.png"};
  for (const auto& p : m.phases) {
    if (!p.confusion.empty()) {
      planned.push_back("confusion_" + p.key + ".png");
    } else {
      files.notes.push_back(
          fmt::format("{} has no confusion matrix in metrics.json (fsa leaves "
                      "it out above 200 classes).",
                      p.title));
    }
    if (!p.history.empty()) {
      planned.push_back("curves_" + p.key + ".png");
    } else {
      files.notes.push_back(fmt::format("{} has no per-epoch history in metrics.json.", p.title));
    }
  }
  const bool has_i = std::any_of(m.phases.begin(), m.phases.end(),
                                 [](const Phase& p) { return p.key == "phase_i"; });
  const bool has_iii = std::any_of(m.phases.begin(), m.phases.end(),
                                   [](const Phase& p) { return p.key == "phase_iii"; });
  if (has_i && !has_iii) files.notes.push_back("This run has no Phase III results.");
  if (has_iii && !has_i) files.notes.push_back("This run has no Phase I results.");
  if (m.head.empty()) files.notes.push_back("metrics.json does not record head/tail classes.");

  bool not_found = false;
  std::string not_found_reason;
  for (const auto& image : planned) {
    fs::remove(out / image, ec);  // never leave an old plot that looks current
    Plot plot;
    if (image == "per_class_accuracy.png") plot = per_class_plot(m, order, out);
    for (const auto& p : m.phases) {
      if (image == "confusion_" + p.key + ".png") plot = confusion_plot(m, p, order, out);
      if (image == "curves_" + p.key + ".png") plot = curves_plot(p, out);
    }
    for (const auto& f : plot.inputs) files.plot_inputs.push_back((out / f).string());
    const std::string tmp = image + ".tmp";
    std::string why = not_found ? not_found_reason
                                : run_gnuplot(options.gnuplot, out, plot.script, tmp, &not_found);
    if (not_found && not_found_reason.empty()) not_found_reason = why;
    if (why.empty() && !is_png(out / tmp)) why = "gnuplot wrote no valid PNG";
    if (why.empty()) {
      fs::rename(out / tmp, out / image, ec);
      if (ec) why = fmt::format("cannot move the plot into place: {}", ec.message());
    }
    fs::remove(out / tmp, ec);
    if (why.empty()) {
      files.images.push_back((out / image).string());
    } else {
      files.missing.push_back({image, why});
    }
  }
  files.contact_sheets = contact_sheets_in(out);
  auto run_path = fs::weakly_canonical(fs::absolute(run_dir), ec);
  if (ec || run_path.empty()) run_path = fs::absolute(run_dir).lexically_normal();
  const auto run_name = run_path.filename().empty() ? run_path.parent_path().filename().string()
                                                    : run_path.filename().string();
  write_text(out / "report.html", render_html(m, order, run_name, planned, files));
  return files;
}

ReportFiles write_report(const std::string& run_dir, const std::string& out_dir) {
  ReportOptions options;
  options.out_dir = out_dir;
  return write_report(run_dir, options);
}

}  // namespace fsa::io
