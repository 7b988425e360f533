// Links moecheck::reference alone: its own dependencies are complete. Routes one gemma4 row and
// prints the ids and weights.
#include <cstdint>
#include <cstdio>
#include <vector>

#include <moecheck/reference/routing.hpp>

int main() {
  const std::vector<float> logits = {0.5f, -1.0f, 2.0f, 1.5f, -0.25f, 3.0f};
  const std::vector<float> scale = {1.0f, 1.0f, 2.0f, 1.0f, 1.0f, 0.5f};
  moecheck::GatingView g;
  g.data = logits.data();
  g.T = 1;
  g.E = 6;
  g.row_stride = 6;
  moecheck::RoutingParams p;
  p.family = moecheck::Family::gemma4;
  p.k = 2;
  p.scale = scale.data();
  double w[2];
  std::int32_t ids[2];
  moecheck::route_reference(g, p, w, ids);
  std::printf("reference only: ids %d %d weights %.6f %.6f\n", ids[0], ids[1], w[0], w[1]);
  return ids[0] == 5 && ids[1] == 2 ? 0 : 1;
}
