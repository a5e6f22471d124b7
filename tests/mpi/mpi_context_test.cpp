#include "sdxl_dreambooth/config/config.h"
#include "sdxl_dreambooth/dist/mpi_runtime.h"
#include "sdxl_dreambooth/error.h"
#include "support/process.h"

#include <gtest/gtest.h>

using namespace sdxl;

TEST(MpiRuntime, RanksAndLocalRanks) {
  dist::MpiRuntime mpi(nullptr, nullptr);
  EXPECT_EQ(mpi.world_size(), 2);
  EXPECT_GE(mpi.rank(), 0);
  // One node: local ranks equal world ranks.
  EXPECT_EQ(mpi.local_size(), mpi.world_size());
  EXPECT_EQ(mpi.local_rank(), mpi.rank());
}

TEST(MpiRuntime, BroadcastString) {
  dist::MpiRuntime mpi(nullptr, nullptr);
  const std::string text = mpi.rank() == 0 ? std::string(100000, 'x') + "end" : "ignored";
  EXPECT_EQ(dist::broadcast_string(mpi.world(), text, 0, 60), std::string(100000, 'x') + "end");
  EXPECT_EQ(dist::broadcast_string(mpi.world(), "", 0, 60), "");
}

TEST(MpiRuntime, ConfigReadOnceAndFailsOnEveryRank) {
  dist::MpiRuntime mpi(nullptr, nullptr);
  // Only rank 0 has the file: every rank still gets its content.
  std::string path = "/nonexistent-on-other-ranks.toml";
  std::unique_ptr<test::TempDir> dir;
  if (mpi.rank() == 0) {
    dir = std::make_unique<test::TempDir>();
    path = (dir->path() / "cfg.toml").string();
    test::write_file(path, "[model]\npretrained = \"m\"\n[data]\ninstance_dir = \"d\"\ninstance_prompt = \"p\"\n");
  }
  const std::string text = dist::read_file_collective(mpi.world(), path, 60);
  EXPECT_EQ(config::load_config_text(text, "cfg.toml").typed().model.pretrained, "m");
  MPI_Barrier(mpi.world());
  // A file rank 0 cannot read is the same UsageError on all ranks, not a hang.
  EXPECT_THROW(dist::read_file_collective(mpi.world(), "/nonexistent/cfg.toml", 60), UsageError);
}
