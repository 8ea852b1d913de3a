# fsa_events: TensorBoard event files (fsa/io/event_writer.h) and console
# progress (fsa/io/progress.h). Needs only the C++ standard library and
# Debian's protobuf (libprotobuf-dev, protobuf-compiler), not LibTorch.
#
#   include(cmake/EventWriter.cmake)
#   target_link_libraries(<target> PUBLIC fsa_events)
#
# The full libprotobuf is linked, not libprotobuf-lite: Debian's libtorch_cpu
# already loads libprotobuf.so.32, and one process should not mix the two.
find_package(Protobuf REQUIRED)

set(FSA_EVENTS_PROTO_DIR ${PROJECT_BINARY_DIR}/generated/fsa_events)
file(MAKE_DIRECTORY ${FSA_EVENTS_PROTO_DIR})
# APPEND_PATH: protoc sees src/io as its import root, so the file registers as
# "tensorboard.proto" and the header is ${FSA_EVENTS_PROTO_DIR}/tensorboard.pb.h
# whichever CMakeLists includes this snippet.
protobuf_generate(
  LANGUAGE cpp
  APPEND_PATH
  PROTOS ${PROJECT_SOURCE_DIR}/src/io/tensorboard.proto
  PROTOC_OUT_DIR ${FSA_EVENTS_PROTO_DIR}
  OUT_VAR FSA_EVENTS_PROTO_SRCS)

add_library(fsa_events STATIC
  ${PROJECT_SOURCE_DIR}/src/io/event_writer.cpp
  ${PROJECT_SOURCE_DIR}/src/io/progress.cpp
  ${FSA_EVENTS_PROTO_SRCS})
target_compile_features(fsa_events PUBLIC cxx_std_17)
target_include_directories(fsa_events
  PUBLIC ${PROJECT_SOURCE_DIR}/include ${FSA_EVENTS_PROTO_DIR})
# The library path, not the protobuf::libprotobuf target: a pip LibTorch, which
# bundles protobuf statically, makes that target an empty alias when
# find_package(Torch) runs first (Caffe2Config.cmake), and the link would fail.
target_include_directories(fsa_events SYSTEM PUBLIC ${Protobuf_INCLUDE_DIRS})
target_link_libraries(fsa_events PUBLIC ${Protobuf_LIBRARIES})
set_target_properties(fsa_events PROPERTIES POSITION_INDEPENDENT_CODE ON)
target_compile_options(fsa_events PRIVATE -Wall -Wextra)
