#include "fsa/augment/fusion.h"

#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace fsa::augment {
namespace {

TEST(Fusion, ConstructedCaseByHand) {
  // One tail map (G = 1), two confusing maps (Na = 2), K = 2 channels, 2×2.
  auto tail = torch::tensor({1.f, 2.f, 3.f, 4.f, 10.f, 20.f, 30.f, 40.f}).view({1, 2, 2, 2});
  auto tail_cam = torch::tensor({0.9f, 0.5f, 0.85f, 0.1f}).view({1, 2, 2});  // > 0.8 at (0,0),(1,0)
  auto other = torch::stack({-torch::ones({2, 2, 2}), -2 * torch::ones({2, 2, 2})}).unsqueeze(0);
  auto other_cam = torch::tensor({0.1f, 0.3f, 0.0f, 0.9f,    // < 0.2 at (0,0),(1,0)
                                  0.5f, 0.15f, 0.19f, 0.2f}) // < 0.2 at (0,1),(1,0)
                       .view({1, 2, 2, 2});
  auto masks = torch::tensor({true, true, false, false, false, true, true, false}).view({1, 2, 2, 2});
  auto out = fuse_with_masks(tail, tail_cam, torch::tensor({6L}), other, other_cam, masks, 0.8, 0.2);
  ASSERT_EQ(out.maps.sizes(), torch::IntArrayRef({2, 2, 2, 2}));
  EXPECT_TRUE(torch::equal(out.labels, torch::tensor({6L, 6L})));
  // Map 0: B = [[1,1],[0,0]] → top row from F_s (tail·[cam>0.8] = [1,0] / [10,0]),
  // bottom row from F_g (other·[cam<0.2] = [-1, 0]).
  auto expected0 = torch::tensor({1.f, 0.f, -1.f, -0.f, 10.f, 0.f, -1.f, -0.f}).view({2, 2, 2});
  // Map 1: B = [[0,1],[1,0]] → (0,0) F_g = 0 (cam 0.5), (0,1) F_s = 0 (cam 0.5),
  // (1,0) F_s = 3 / 30 (cam 0.85), (1,1) F_g = 0 (cam 0.2 is not < 0.2).
  auto expected1 = torch::tensor({0.f, 0.f, 3.f, 0.f, 0.f, 0.f, 30.f, 0.f}).view({2, 2, 2});
  EXPECT_TRUE(torch::allclose(out.maps[0], expected0)) << out.maps[0];
  EXPECT_TRUE(torch::allclose(out.maps[1], expected1)) << out.maps[1];
}

TEST(Fusion, EachFusedMapTakesTheLabelOfItsOwnTailImage) {
  // The reference labels a whole batch with its first tail image's class; here
  // each fused map keeps the class of the tail image it came from.
  auto tail = torch::rand({3, 4, 2, 2});
  auto out = fuse_feature_maps(tail, torch::rand({3, 2, 2}), torch::tensor({5L, 7L, 9L}),
                               torch::rand({3, 2, 4, 2, 2}), torch::rand({3, 2, 2, 2}), 0.8, 0.2,
                               at::make_generator<at::CPUGeneratorImpl>(1));
  EXPECT_TRUE(torch::equal(out.labels, torch::tensor({5L, 5L, 7L, 7L, 9L, 9L})));
}

TEST(Fusion, RandomMasksAreSeededAndShapesChecked) {
  auto args = std::make_tuple(torch::rand({2, 3, 4, 4}), torch::rand({2, 4, 4}),
                              torch::tensor({1L, 2L}), torch::rand({2, 3, 3, 4, 4}),
                              torch::rand({2, 3, 4, 4}));
  auto run = [&](uint64_t seed) {
    return fuse_feature_maps(std::get<0>(args), std::get<1>(args), std::get<2>(args),
                             std::get<3>(args), std::get<4>(args), 0.8, 0.2,
                             at::make_generator<at::CPUGeneratorImpl>(seed));
  };
  EXPECT_TRUE(torch::equal(run(3).masks, run(3).masks));
  EXPECT_FALSE(torch::equal(run(3).masks, run(4).masks));
  EXPECT_THROW(fuse_feature_maps(torch::rand({2, 3, 4, 4}), torch::rand({2, 4, 4}),
                                 torch::tensor({1L, 2L}), torch::rand({2, 3, 5, 4, 4}),
                                 torch::rand({2, 3, 4, 4}), 0.8, 0.2,
                                 at::make_generator<at::CPUGeneratorImpl>(1)),
               std::invalid_argument);
}

}  // namespace
}  // namespace fsa::augment
