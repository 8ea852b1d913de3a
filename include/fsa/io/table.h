// `fsa table`: the results table of several run folders, as Markdown and
// HTML: method, schedule, top-1 overall, many/medium/few-shot, head/tail,
// with mean ± standard deviation over the runs of one recipe (typically
// several random_seed values of one config).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace fsa::io {

/// One result of one run folder (a pipeline folder gives two: Phase I and
/// Phase III).
struct ResultRow {
  std::string method;    ///< e.g. "CE", "LDAM-DRW + FSA (online)", "cRT"
  std::string schedule;  ///< e.g. "200 ep", "200 + 40 ep", "+10 ep"
  std::string setting;   ///< dataset, imbalance factor, network, precision
  std::string run;       ///< the run folder
  /// The resolved config(s) of the row less what does not define the recipe
  /// (random_seed, threads, device, checkpoint.*, log.*): rows group only
  /// when their recipes are equal.
  std::string recipe;
  std::optional<uint64_t> seed;
  /// top1, many, medium, few, head, tail: fractions in [0, 1], or nullopt
  /// where the group is empty.
  std::map<std::string, std::optional<double>> figures;
};

/// A group of rows with the same method, schedule, setting and recipe.
struct ResultGroup {
  std::string method, schedule, setting;
  std::vector<std::string> runs;
  std::vector<uint64_t> seeds;
  /// Per figure: mean and sample standard deviation (n − 1; 0 for one run).
  std::map<std::string, std::pair<double, double>> figures;
};

/// The figures in table order, with their column titles.
const std::vector<std::pair<std::string, std::string>>& result_columns();

/// The rows of one run folder: its metrics.json (keys phase_i, phase_iii,
/// decouple, test) and the resolved config.yaml of each phase (the folder's
/// own, or phase_i/ and phase_iii/ inside a pipeline folder). Throws
/// std::runtime_error naming the file when either is missing or unreadable.
std::vector<ResultRow> read_result_rows(const std::string& run_dir);

/// Rows grouped by (method, schedule, setting, recipe), in first-seen order.
std::vector<ResultGroup> group_results(const std::vector<ResultRow>& rows);

/// The table as GitHub Markdown; percentages with two decimals, "a ± s"
/// where a group has several runs.
std::string results_markdown(const std::vector<ResultGroup>& groups);

/// The same table as a standalone HTML page.
std::string results_html(const std::vector<ResultGroup>& groups);

}  // namespace fsa::io
