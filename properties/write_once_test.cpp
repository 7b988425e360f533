// Write-once corpus files: an existing file is never replaced, readers never see a partial
// file, and many threads or processes publishing the same name at once end with exactly one
// complete file, one creator, and no temporary file left behind.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness/core/corpus.hpp"
#include "harness/core/write_once.hpp"
#include "properties/support/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace moecheck;

namespace {

using moecheck_test::temp_dir;
using moecheck_test::names_in;

/// A large text unique to `writer`, so a torn or interleaved file cannot equal any writer's text.
std::string text_of(int writer) {
  std::string s = "writer " + std::to_string(writer) + "\n";
  s += std::string(std::size_t{1} << 18, static_cast<char>('a' + writer % 26));
  return s + "\nend " + std::to_string(writer) + "\n";
}

TEST(WriteOnce, CreatesOnceAndNeverReplaces) {
  const fs::path dir = temp_dir("write_once_basic") / "nested";
  const WriteOnceResult a = write_file_once(dir.string(), "x.case", "first\n");
  EXPECT_TRUE(a.created);
  EXPECT_EQ(a.path, (dir / "x.case").string());
  EXPECT_EQ(read_whole_file(a.path), "first\n");
  const WriteOnceResult b = write_file_once(dir.string(), "x.case", "second\n");
  EXPECT_FALSE(b.created);
  EXPECT_EQ(b.path, a.path);
  EXPECT_EQ(read_whole_file(a.path), "first\n");
  EXPECT_EQ(names_in(dir), std::vector<std::string>{"x.case"});
  fs::remove_all(dir.parent_path());
}

TEST(WriteOnce, RejectsNamesThatAreNotPlainFileNames) {
  const fs::path dir = temp_dir("write_once_names");
  for (const std::string bad : {"", ".", "..", "a/b.case", "/abs.case"}) {
    EXPECT_THROW(write_file_once(dir.string(), bad, "x"), std::invalid_argument) << "'" << bad << "'";
  }
  fs::remove_all(dir);
}

TEST(WriteOnce, UnwritableFolderIsANamedError) {
  const fs::path dir = temp_dir("write_once_unwritable");
  fs::create_directories(dir);
  std::ofstream(dir / "file") << "a regular file, not a folder";
  try {
    write_file_once((dir / "file" / "sub").string(), "x.case", "x");
    ADD_FAILURE() << "wrote below a regular file";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find((dir / "file").string()), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

TEST(WriteOnce, ThreadsRacingForOneNameLeaveOneCompleteFile) {
  const fs::path dir = temp_dir("write_once_threads");
  constexpr int kThreads = 16;
  for (int round = 0; round < 20; ++round) {
    const std::string name = "entry-" + std::to_string(round) + ".case";
    std::atomic<int> ready{0};
    std::vector<int> created(kThreads, 0);
    std::vector<std::string> paths(kThreads), errors(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        const std::string text = text_of(i);
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        try {
          const WriteOnceResult r = write_file_once(dir.string(), name, text);
          created[i] = r.created ? 1 : 0;
          paths[i] = r.path;
        } catch (const std::exception& e) {
          errors[i] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    int creators = 0, winner = -1;
    for (int i = 0; i < kThreads; ++i) {
      EXPECT_EQ(errors[i], "") << "writer " << i;
      EXPECT_EQ(paths[i], (dir / name).string()) << "writer " << i;
      if (created[i]) {
        ++creators;
        winner = i;
      }
    }
    ASSERT_EQ(creators, 1) << "round " << round;
    EXPECT_EQ(read_whole_file((dir / name).string()), text_of(winner)) << "round " << round;
  }
  std::vector<std::string> names = names_in(dir);
  EXPECT_EQ(names.size(), 20u) << "temporary files left behind";
  for (const auto& n : names) EXPECT_EQ(n.rfind("entry-", 0), 0u) << n;
  fs::remove_all(dir);
}

TEST(WriteOnce, ProcessesRacingForOneNameLeaveOneCompleteFile) {
  const fs::path dir = temp_dir("write_once_processes");
  fs::create_directories(dir);
  constexpr int kProcs = 12;
  for (int round = 0; round < 5; ++round) {
    const std::string name = "entry-" + std::to_string(round) + ".case";
    int gate[2];
    ASSERT_EQ(::pipe(gate), 0);
    std::vector<pid_t> pids;
    for (int i = 0; i < kProcs; ++i) {
      const pid_t pid = ::fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        ::close(gate[1]);
        char c;
        while (::read(gate[0], &c, 1) < 0) {
        }  // returns 0 when the parent opens the gate (closes the write end)
        int code = 3;
        try {
          const WriteOnceResult r = write_file_once(dir.string(), name, text_of(i));
          code = r.path == (dir / name).string() ? (r.created ? 1 : 0) : 4;
        } catch (...) {
          code = 2;
        }
        ::_exit(code);
      }
      pids.push_back(pid);
    }
    ::close(gate[0]);
    ::close(gate[1]);  // every child starts now
    int creators = 0, winner = -1;
    for (int i = 0; i < kProcs; ++i) {
      int status = 0;
      ASSERT_EQ(::waitpid(pids[i], &status, 0), pids[i]);
      ASSERT_TRUE(WIFEXITED(status));
      const int code = WEXITSTATUS(status);
      EXPECT_TRUE(code == 0 || code == 1) << "writer " << i << " exit " << code;
      if (code == 1) {
        ++creators;
        winner = i;
      }
    }
    ASSERT_EQ(creators, 1) << "round " << round;
    EXPECT_EQ(read_whole_file((dir / name).string()), text_of(winner)) << "round " << round;
  }
  EXPECT_EQ(names_in(dir).size(), 5u) << "temporary files left behind";
  fs::remove_all(dir);
}

CorpusEntry entry_with_message(const std::string& message) {
  CorpusEntry e;
  e.c.family = Family::gemma4;
  e.c.dtype = DType::f32;
  e.c.T = 1;
  e.c.E = 2;
  e.c.k = 1;
  e.c.logits = {1.0f, 0.5f};
  e.target = "kernel:warp_per_row";
  e.mutant = "scale_by_slot";
  e.expect = Expectation::fail;
  e.check = "weight";
  e.signature = "00112233aabbccdd";
  e.message = message;
  return e;
}

// Parallel shards that find the same failure save it under the same name at the same moment:
// every writer gets the path, none fails, and the file is one writer's complete entry.
TEST(WriteOnce, CorpusEntryWritersRacingInOneProcess) {
  const fs::path dir = temp_dir("write_once_corpus");
  constexpr int kThreads = 12;
  for (int round = 0; round < 20; ++round) {
    const fs::path sub = dir / std::to_string(round);
    std::atomic<int> ready{0};
    std::vector<std::string> paths(kThreads), errors(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        const CorpusEntry e = entry_with_message("writer " + std::to_string(i) + std::string(4096, 'x'));
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        try {
          paths[i] = write_corpus_entry(e, sub.string());
        } catch (const std::exception& ex) {
          errors[i] = ex.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    const std::string expected = (sub / "kernel_warp_per_row-00112233aabbccdd.case").string();
    for (int i = 0; i < kThreads; ++i) {
      EXPECT_EQ(errors[i], "") << "round " << round << " writer " << i;
      EXPECT_EQ(paths[i], expected) << "round " << round << " writer " << i;
    }
    const std::string text = read_whole_file(expected);
    bool one_of_them = false;
    for (int i = 0; i < kThreads; ++i) {
      one_of_them = one_of_them ||
                    text == format_corpus_entry(entry_with_message("writer " + std::to_string(i) + std::string(4096, 'x')));
    }
    EXPECT_TRUE(one_of_them) << "round " << round << ": the file is no writer's complete entry";
    EXPECT_EQ(names_in(sub), std::vector<std::string>{"kernel_warp_per_row-00112233aabbccdd.case"})
        << "round " << round << ": temporary files left behind";
  }
  fs::remove_all(dir);
}

}  // namespace
