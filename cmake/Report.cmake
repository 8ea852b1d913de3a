# fsa_report: the run report (metrics.json -> PNG plots + report.html).
# Needs no LibTorch, only nlohmann_json and fmt, so it builds in seconds; the
# plots are drawn at run time by gnuplot (Debian: gnuplot-nox), see
# docs/REPORTS.md. Include after find_package(fmt) and find_package(nlohmann_json)
# or let this file find them.
if(NOT TARGET fmt::fmt)
  find_package(fmt REQUIRED)
endif()
if(NOT TARGET nlohmann_json::nlohmann_json)
  find_package(nlohmann_json REQUIRED)
endif()

# Paths from this file's place, so that a small project outside the tree can
# include it too (in fsa's own build this is ${PROJECT_SOURCE_DIR}).
get_filename_component(_fsa_report_root "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
add_library(fsa_report STATIC ${_fsa_report_root}/src/io/report.cpp)
target_include_directories(fsa_report PUBLIC ${_fsa_report_root}/include)
target_link_libraries(fsa_report PUBLIC nlohmann_json::nlohmann_json fmt::fmt)
target_compile_features(fsa_report PUBLIC cxx_std_17)
target_compile_options(fsa_report PRIVATE -Wall -Wextra)
