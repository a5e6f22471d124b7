// data.cache_dir end to end: a second run (and a two-rank run) reads every latent from the
// cache and trains to the same bits as the first and as an uncached run; an image whose
// content changed is encoded again (its old entry is never looked up); a damaged entry is
// reported, encoded again and not trained on.
#include "sdxl_dreambooth/io/hdf5_file.h"
#include "support/process.h"
#include "support/reference.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

using namespace sdxl;
namespace fs = std::filesystem;

namespace {

std::string cache_q(const fs::path& p) { return "\"" + p.string() + "\""; }

std::string cache_config(const fs::path& images, const fs::path& cache) {
  std::ostringstream s;
  s << "[model]\npretrained = " << cache_q(test::reference_dir() / "tiny-sdxl") << "\n"
    << "[data]\ninstance_dir = " << cache_q(images) << "\ninstance_prompt = \"a photo of sks cat\"\n"
    << "resolution = 64\nrandom_flip = true\nrepeats = 2\n"
    << (cache.empty() ? std::string() : "cache_dir = " + cache_q(cache) + "\n")
    << "[train]\nseed = 0\nbatch_size = 2\nmax_steps = 3\n"
    << "[logging]\ntensorboard = false\n";
  return s.str();
}

std::vector<fs::path> shards(const fs::path& cache) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(cache)) {
    if (e.path().extension() == ".h5") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(LatentCache, RerunsReadTheCacheAndTrainTheSameBits) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  const auto chelsea = test::subjects_dir() / "chelsea";
  fs::create_directories(dir / "images");
  for (const char* f : {"01.jpg", "02.png", "03.jpg"}) fs::copy_file(chelsea / f, dir / "images" / f);
  test::write_file(dir / "run.toml", cache_config(dir / "images", dir / "cache"));
  test::write_file(dir / "uncached.toml", cache_config(dir / "images", {}));
  const auto run = [&](const std::string& out, const std::vector<std::string>& extra = {}, int ranks = 1) {
    const fs::path config = dir / (out == "uncached" ? "uncached.toml" : "run.toml");
    std::vector<std::string> args{"train", config.string(), "--set",
                                  "output.dir=\"" + (dir / out).string() + "\""};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = ranks == 1 ? test::run_cli(args) : test::run_mpirun(ranks, args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return std::make_pair(r.err, test::read_file(dir / out / "pytorch_lora_weights.safetensors"));
  };
  const auto first = run("first");
  EXPECT_NE(first.first.find("data.cache_dir: 0 examples read from the cache, 6 encoded and stored"),
            std::string::npos)
      << first.first;
  ASSERT_EQ(shards(dir / "cache").size(), 2u);  // the latents, then the prompt embeddings
  const auto second = run("second");
  EXPECT_NE(second.first.find("data.cache_dir: 6 examples read from the cache, 0 encoded and stored"),
            std::string::npos)
      << second.first;
  EXPECT_TRUE(second.second == first.second) << "a run from the cache trains other bits";
  const auto uncached = run("uncached");
  EXPECT_TRUE(uncached.second == first.second) << "the cache changes what is trained";
  const auto two_ranks = run("two", {}, 2);
  EXPECT_NE(two_ranks.first.find("data.cache_dir: 6 examples read from the cache, 0 encoded and stored"),
            std::string::npos)
      << two_ranks.first;

  // Another image under the same name: its content hash is another key, so it is encoded.
  fs::copy_file(chelsea / "04.jpeg", dir / "images" / "03.jpg", fs::copy_options::overwrite_existing);
  const auto changed = run("changed");
  EXPECT_NE(changed.first.find("data.cache_dir: 4 examples read from the cache, 2 encoded and stored"),
            std::string::npos)
      << changed.first;
  fs::copy_file(chelsea / "03.jpg", dir / "images" / "03.jpg", fs::copy_options::overwrite_existing);

  // One byte of one stored mean flipped in the first shard: caught by its checksum.
  const fs::path shard = shards(dir / "cache").front();
  std::string entry_bytes;
  {
    io::H5File f = io::H5File::open_read_only(shard.string());
    const io::H5Group entries = f.root().open_group("entries");
    const io::H5Array a = entries.open_group(entries.children().front()).read_array("mean");
    entry_bytes.assign(a.bytes.begin(), a.bytes.end());
  }
  std::string bytes = test::read_file(shard);
  const auto at = bytes.find(entry_bytes.substr(0, 64));
  ASSERT_NE(at, std::string::npos);
  bytes[at + 17] = static_cast<char>(bytes[at + 17] ^ 0x40);
  std::ofstream(shard, std::ios::binary | std::ios::trunc) << bytes;
  const auto damaged = run("damaged");
  EXPECT_NE(damaged.first.find("is damaged"), std::string::npos) << damaged.first;
  EXPECT_NE(damaged.first.find("5 examples read from the cache, 1 encoded and stored (1 of them replacing damaged "
                               "entries)"),
            std::string::npos)
      << damaged.first;
  // Encoded again alone rather than in a batch of four, the entry differs from the first run's
  // by rounding only: the losses agree closely.
  const auto losses = [&](const std::string& out) {
    std::vector<double> v;
    std::istringstream csv(test::read_file(dir / out / "metrics.csv"));
    std::string line;
    std::getline(csv, line);
    while (std::getline(csv, line)) v.push_back(std::stod(line.substr(line.find(',') + 1)));
    return v;
  };
  const auto a = losses("first"), b = losses("damaged");
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-4 * std::abs(a[i])) << "step " << i + 1;
}

TEST(LatentCache, AnUnwritableCacheFolderIsAConfigError) {
  SDXL_REQUIRE_REFERENCE();
  test::TempDir dir;
  test::write_file(dir / "a-file", "x");
  test::write_file(dir / "run.toml", cache_config(test::subjects_dir() / "chelsea", dir / "a-file" / "cache"));
  const auto r = test::run_cli({"train", (dir / "run.toml").string(), "--set",
                                "output.dir=\"" + (dir / "out").string() + "\""});
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("data.cache_dir: '" + (dir / "a-file").string() + "' is not a folder"), std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir / "out"));
}
