#include "fsa/io/table.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>

#include "fsa/io/config.h"

namespace fs = std::filesystem;

namespace fsa::io {
namespace {

Config read_config(const fs::path& path) {
  if (!fs::exists(path)) {
    throw std::runtime_error(
        fmt::format("run folder: '{}' is missing (written by every fsa "
                    "training command)",
                    path.string()));
  }
  try {
    return parse_config(load_yaml_file(path.string()), path.string());
  } catch (const ConfigError& e) {
    throw std::runtime_error(e.what());
  }
}

std::string loss_name(const Config& c) {
  const auto& l = c.train.loss;
  std::string name = l.name == "cross_entropy" ? "CE"
                     : l.name == "focal"       ? fmt::format("Focal (γ = {})", l.gamma)
                     : l.name == "ldam"        ? "LDAM"
                                               : "Balanced Softmax";
  if (l.weighting == "class_balanced") name = "CB-" + name;
  if (l.weighting == "drw") name += "-DRW";
  return name;
}

std::string phase_i_method(const Config& c) {
  auto name = loss_name(c);
  const auto& s = c.train.sampler.name;
  if (s == "class_balanced") name += ", class-balanced sampling";
  if (s == "square_root") name += ", square-root sampling";
  if (s == "progressive") name += ", progressively-balanced sampling";
  return name;
}

std::string adjusted(const Config& c, std::string name) {
  if (c.test.logit_adjust_tau != 0) {
    name += fmt::format(" + logit adjustment (τ = {})", c.test.logit_adjust_tau);
  }
  return name;
}

std::string setting(const Config& c) {
  auto s =
      is_list_dataset(c.dataset.name)
          ? fmt::format("{} ({}), {}", c.dataset.name,
                        fs::path(c.dataset.train_list).filename().string(), c.model.name)
          : fmt::format("{} IF {}, {}", c.dataset.name, c.dataset.imbalance_factor, c.model.name);
  if (c.bf16_mixed()) s += ", bf16-mixed";
  if (c.channels_last()) s += ", channels-last";
  return s;
}

/// The config as YAML without what may differ between runs of one recipe.
std::string recipe_of(Config c) {
  c.random_seed = 0;
  c.threads = 0;
  c.device = "cpu";
  c.checkpoint = {};
  c.log = {};
  c.finetune.analysis.clear();
  return to_yaml(c);
}

ResultRow row_of(const nlohmann::json& m, const std::string& key, const std::string& run) {
  ResultRow r;
  r.run = run;
  for (const auto& [name, title] : result_columns()) {
    const auto& v = m.contains(name) ? m.at(name) : nlohmann::json();
    if (!v.is_null() && !v.is_number()) {
      throw std::runtime_error(
          fmt::format("{}/metrics.json: '{}.{}' is not a number", run, key, name));
    }
    r.figures[name] = v.is_null() ? std::nullopt : std::optional<double>(v.get<double>());
  }
  return r;
}

std::string percent(double v) { return fmt::format("{:.2f}", 100 * v); }

std::string cell(const ResultGroup& g, const std::string& name) {
  const auto it = g.figures.find(name);
  if (it == g.figures.end()) return "–";
  if (g.runs.size() < 2) return percent(it->second.first);
  return percent(it->second.first) + " ± " + percent(it->second.second);
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '<')
      out += "&lt;";
    else if (ch == '>')
      out += "&gt;";
    else if (ch == '&')
      out += "&amp;";
    else
      out += ch;
  }
  return out;
}

}  // namespace

const std::vector<std::pair<std::string, std::string>>& result_columns() {
  static const std::vector<std::pair<std::string, std::string>> columns{
      {"top1", "top-1"}, {"many", "many"}, {"medium", "medium"},
      {"few", "few"},    {"head", "head"}, {"tail", "tail"}};
  return columns;
}

std::vector<ResultRow> read_result_rows(const std::string& run_dir) {
  const fs::path dir(run_dir);
  const auto metrics_path = dir / "metrics.json";
  std::ifstream in(metrics_path);
  if (!in) {
    throw std::runtime_error(fmt::format("run folder '{}' has no metrics.json", run_dir));
  }
  nlohmann::json m;
  try {
    m = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(
        fmt::format("'{}' is not valid JSON: {}", metrics_path.string(), e.what()));
  }
  const bool pipeline = fs::exists(dir / "phase_i" / "config.yaml");
  auto config_of = [&](const std::string& phase) {
    return read_config(pipeline ? dir / phase / "config.yaml" : dir / "config.yaml");
  };
  std::vector<ResultRow> rows;
  if (m.contains("phase_i")) {
    const auto c = config_of("phase_i");
    auto r = row_of(m["phase_i"], "phase_i", run_dir);
    r.method = adjusted(c, phase_i_method(c));
    r.schedule = fmt::format("{} ep", c.train.num_epoch);
    r.setting = setting(c);
    r.seed = c.random_seed;
    r.recipe = recipe_of(c);
    rows.push_back(r);
  }
  if (m.contains("phase_iii")) {
    const auto c3 = config_of("phase_iii");
    auto r = row_of(m["phase_iii"], "phase_iii", run_dir);
    const auto mode = c3.finetune.offline ? "offline" : "online";
    r.recipe = recipe_of(c3);
    if (pipeline) {
      const auto c1 = config_of("phase_i");
      r.method = adjusted(c3, fmt::format("{} + FSA ({})", phase_i_method(c1), mode));
      r.schedule = fmt::format("{} + {} ep", c1.train.num_epoch, c3.train.num_epoch);
      r.recipe += recipe_of(c1);
    } else {
      r.method = adjusted(c3, fmt::format("FSA ({})", mode));
      r.schedule = fmt::format("+{} ep", c3.train.num_epoch);
    }
    r.setting = setting(c3);
    r.seed = c3.random_seed;
    rows.push_back(r);
  }
  if (m.contains("decouple")) {
    const auto c = read_config(dir / "config.yaml");
    auto r = row_of(m["decouple"], "decouple", run_dir);
    const auto& method = c.decoupling.method;
    r.method = adjusted(c, method == "crt"   ? std::string("cRT")
                           : method == "lws" ? std::string("LWS")
                                             : fmt::format("τ-norm (τ = {})", c.decoupling.tau));
    r.recipe = recipe_of(c);
    // The Phase I network it sits on (written by fsa decouple beside its config).
    if (fs::exists(dir / "phase_i_config.yaml")) {
      const auto source = read_config(dir / "phase_i_config.yaml");
      r.method += " on " + phase_i_method(source);
      r.recipe += recipe_of(source);
    }
    r.schedule = method == "tau_norm" ? "no training" : fmt::format("+{} ep", c.train.num_epoch);
    r.setting = setting(c);
    r.seed = c.random_seed;
    rows.push_back(r);
  }
  if (rows.empty()) {
    throw std::runtime_error(
        fmt::format("'{}' has none of phase_i, phase_iii, decouple", metrics_path.string()));
  }
  return rows;
}

std::vector<ResultGroup> group_results(const std::vector<ResultRow>& rows) {
  std::vector<ResultGroup> groups;
  std::vector<std::vector<const ResultRow*>> members;
  std::vector<std::string> recipes;
  for (const auto& r : rows) {
    size_t i = 0;
    while (i < groups.size() &&
           !(groups[i].method == r.method && groups[i].schedule == r.schedule &&
             groups[i].setting == r.setting && recipes[i] == r.recipe)) {
      ++i;
    }
    if (i == groups.size()) {
      groups.push_back({r.method, r.schedule, r.setting, {}, {}, {}});
      members.emplace_back();
      recipes.push_back(r.recipe);
    }
    groups[i].runs.push_back(r.run);
    if (r.seed) groups[i].seeds.push_back(*r.seed);
    members[i].push_back(&r);
  }
  for (size_t i = 0; i < groups.size(); ++i) {
    for (const auto& [name, title] : result_columns()) {
      std::vector<double> v;
      for (const auto* r : members[i]) {
        const auto& f = r->figures.at(name);
        if (f) v.push_back(*f);
      }
      if (v.empty()) continue;
      double mean = 0;
      for (double x : v) mean += x;
      mean /= double(v.size());
      double var = 0;
      for (double x : v) var += (x - mean) * (x - mean);
      const double sd = v.size() > 1 ? std::sqrt(var / double(v.size() - 1)) : 0.0;
      groups[i].figures[name] = {mean, sd};
    }
  }
  return groups;
}

std::string results_markdown(const std::vector<ResultGroup>& groups) {
  std::ostringstream os;
  os << "| method | schedule | setting | runs |";
  for (const auto& [name, title] : result_columns()) os << " " << title << " |";
  os << "\n| --- | --- | --- | ---: |";
  for (size_t i = 0; i < result_columns().size(); ++i) os << " ---: |";
  os << "\n";
  for (const auto& g : groups) {
    std::string names;
    for (const auto& run : g.runs) {
      names += (names.empty() ? "" : ", ") + fs::path(run).filename().string();
    }
    os << "| " << g.method << " | " << g.schedule << " | " << g.setting << " | " << g.runs.size()
       << " (" << names << ") |";
    for (const auto& [name, title] : result_columns()) os << " " << cell(g, name) << " |";
    os << "\n";
  }
  os << "\nTop-1 accuracy (%) on the test split at each run's final epoch; a ± s: mean and "
        "sample standard deviation over the runs of one recipe (the same config but for "
        "random_seed, threads, device, checkpoint and log).\n";
  return os.str();
}

std::string results_html(const std::vector<ResultGroup>& groups) {
  std::ostringstream os;
  os << "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>fsa results</title>\n"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px}td.n{text-align:right}</style>"
        "</head><body>\n<h1>Results</h1>\n<table>\n<tr><th>method</th><th>schedule</th>"
        "<th>setting</th><th>runs</th>";
  for (const auto& [name, title] : result_columns()) os << "<th>" << title << "</th>";
  os << "</tr>\n";
  for (const auto& g : groups) {
    os << "<tr><td>" << html_escape(g.method) << "</td><td>" << html_escape(g.schedule)
       << "</td><td>" << html_escape(g.setting) << "</td><td class=\"n\" title=\"";
    for (const auto& r : g.runs) os << html_escape(r) << " ";
    os << "\">" << g.runs.size() << "</td>";
    for (const auto& [name, title] : result_columns()) {
      os << "<td class=\"n\">" << html_escape(cell(g, name)) << "</td>";
    }
    os << "</tr>\n";
  }
  os << "</table>\n<p>Top-1 accuracy (%) on the test split at each run's final epoch; a ± s: "
        "mean and sample standard deviation over the runs of one recipe (the same config but for "
        "random_seed, threads, device, checkpoint and log).</p>\n"
        "</body></html>\n";
  return os.str();
}

}  // namespace fsa::io
