// SDXL_STATUS_FILE: which rank reports, and what the report holds.
#include "sdxl_dreambooth/cli/status_file.h"
#include "sdxl_dreambooth/error.h"
#include "support/fake_env.h"
#include "support/process.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

using sdxl::cli::first_rank_of_launch;
using sdxl::cli::StatusFile;
using sdxl::test::env_of;

TEST(StatusFile, OnlyTheLaunchsFirstRankReports) {
  EXPECT_TRUE(first_rank_of_launch(env_of({})));
  EXPECT_TRUE(first_rank_of_launch(env_of({{"PMIX_RANK", "0"}, {"SLURM_PROCID", "0"}})));
  EXPECT_FALSE(first_rank_of_launch(env_of({{"PMIX_RANK", "1"}, {"SLURM_PROCID", "1"}})));
  // mpirun inside an allocation: every rank inherits the batch step's SLURM_PROCID=0.
  EXPECT_FALSE(first_rank_of_launch(env_of({{"OMPI_COMM_WORLD_RANK", "3"}, {"SLURM_PROCID", "0"}})));
  EXPECT_TRUE(first_rank_of_launch(env_of({{"OMPI_COMM_WORLD_RANK", "0"}, {"SLURM_PROCID", "0"}})));
  EXPECT_FALSE(first_rank_of_launch(env_of({{"PMI_RANK", "2"}})));
  EXPECT_FALSE(first_rank_of_launch(env_of({{"SLURM_PROCID", "x"}})));
}

TEST(StatusFile, ReportsStartThenExitCodeReplacingTheFile) {
  sdxl::test::TempDir dir;
  const StatusFile status((dir / "job.status").string());
  status.started("train");
  EXPECT_EQ(sdxl::test::read_file(dir / "job.status"), "started train\n");
  status.finished(75);
  EXPECT_EQ(sdxl::test::read_file(dir / "job.status"), "exit 75\n");
  // Nothing left beside it.
  int files = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++files;
  EXPECT_EQ(files, 1);
}

TEST(StatusFile, AnUnwritableFileIsAnErrorNamingIt) {
  sdxl::test::TempDir dir;
  const std::string path = (dir / "missing" / "job.status").string();
  const StatusFile status(path);
  try {
    status.started("train");
    FAIL() << "no error";
  } catch (const sdxl::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
  status.finished(0);  // warns, never throws
}
