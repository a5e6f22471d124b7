#include "sdxl_dreambooth/util/logger.h"

#include <gtest/gtest.h>

#include <sstream>

using sdxl::Logger;
using sdxl::LogLevel;

TEST(Logger, RankZeroPrintsInfoOthersOnlyWarnings) {
  std::ostringstream r0, r3;
  Logger l0(r0, LogLevel::kInfo, 0, 8, false), l3(r3, LogLevel::kInfo, 3, 8, false);
  l0.info("step 1");
  l3.info("step 1");
  l3.warn("slow disk\nsecond line");
  EXPECT_EQ(r0.str(), "INFO  step 1\n");
  EXPECT_EQ(r3.str(), "WARN  [rank 3/8] slow disk\nWARN  [rank 3/8] second line\n");
}

TEST(Logger, LevelFilters) {
  std::ostringstream out;
  Logger l(out, LogLevel::kWarn, 0, 1, false);
  l.info("hidden");
  l.debug("hidden");
  l.error("shown");
  EXPECT_EQ(out.str(), "ERROR shown\n");
  EXPECT_EQ(sdxl::parse_log_level("debug"), LogLevel::kDebug);
  EXPECT_ANY_THROW(sdxl::parse_log_level("verbose"));
}

TEST(Logger, TimestampsByDefault) {
  std::ostringstream out;
  Logger l(out);
  l.info("x");
  EXPECT_EQ(out.str().size(), std::string("2026-01-01 00:00:00 INFO  x\n").size());
}
