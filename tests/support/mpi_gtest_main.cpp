// GoogleTest main for MPI tests: every rank runs every test; rank 0 prints the usual
// output plus every other rank's failures, gathered over MPI; all ranks exit with the
// worst result, so ctest sees a failure on any rank.
#include <gtest/gtest.h>
#include <mpi.h>

#include <sstream>
#include <string>
#include <vector>

namespace {

class FailureCollector : public testing::EmptyTestEventListener {
 public:
  explicit FailureCollector(int rank) : rank_(rank) {}
  void OnTestPartResult(const testing::TestPartResult& r) override {
    if (!r.failed()) return;
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    std::ostringstream s;
    s << "[rank " << rank_ << "] " << (info ? std::string(info->test_suite_name()) + "." + info->name() : "?")
      << " at " << (r.file_name() ? r.file_name() : "?") << ":" << r.line_number() << "\n"
      << r.message() << "\n";
    text_ += s.str();
  }
  const std::string& text() const { return text_; }

 private:
  int rank_;
  std::string text_;
};

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  testing::InitGoogleTest(&argc, argv);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  auto& listeners = testing::UnitTest::GetInstance()->listeners();
  if (rank != 0) delete listeners.Release(listeners.default_result_printer());
  auto* collector = new FailureCollector(rank);
  listeners.Append(collector);  // owned by gtest

  int result = RUN_ALL_TESTS();

  const std::string& mine = collector->text();
  int len = static_cast<int>(mine.size());
  std::vector<int> lens(size), displs(size);
  MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
  std::string all;
  if (rank == 0) {
    int total = 0;
    for (int r = 0; r < size; ++r) {
      displs[r] = total;
      total += lens[r];
    }
    all.resize(static_cast<std::size_t>(total));
  }
  MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
  int worst = 0;
  MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank == 0) {
    if (!all.empty()) std::printf("\nFailures on all ranks (%d ranks):\n%s", size, all.c_str());
    std::printf("MPI test run on %d ranks: %s\n", size, worst == 0 ? "all ranks passed" : "FAILED on some rank");
  }
  MPI_Finalize();
  return worst;
}
