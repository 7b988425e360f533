#include "harness/core/write_once.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace fs = std::filesystem;

namespace moecheck {
namespace {

std::string errno_text(int e) { return std::strerror(e); }

/// Writes all of `text` to `fd`; returns 0 or the errno of the failing call.
int write_all(int fd, const std::string& text) {
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return 0;
}

/// Creates a new file at `path` (never opening an existing one) holding `text`.
/// Returns 0, EEXIST when `path` exists, or the errno of the failing call (the partial file
/// is then removed).
int create_exclusive(const std::string& path, const std::string& text) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return errno;
  int err = write_all(fd, text);
  if (::close(fd) != 0 && err == 0 && errno != EINTR) err = errno;
  if (err != 0) ::unlink(path.c_str());
  return err;
}

/// Moves `tmp` to `target` unless `target` exists. Returns 0 (moved), EEXIST (target
/// exists; tmp left in place) or another errno (tmp left in place).
int publish_noreplace(const std::string& tmp, const std::string& target) {
#if defined(RENAME_NOREPLACE)
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, target.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno == EEXIST) return EEXIST;
  if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP && errno != EOPNOTSUPP) return errno;
#endif
  // No exclusive rename on this file system: a hard link fails when the name exists.
  if (::link(tmp.c_str(), target.c_str()) == 0) {
    ::unlink(tmp.c_str());
    return 0;
  }
  return errno;
}

std::atomic<unsigned long> g_counter{0};

}  // namespace

WriteOnceResult write_file_once(const std::string& dir, const std::string& name, const std::string& text) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    throw std::invalid_argument("write-once file name '" + name + "' is not a plain file name");
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create folder '" + dir + "': " + ec.message());
  WriteOnceResult out;
  out.path = (fs::path(dir) / name).string();

  // A temporary name no other writer (thread or process) uses.
  std::string tmp;
  int err = EEXIST;
  for (int attempt = 0; attempt < 100 && err == EEXIST; ++attempt) {
    std::ostringstream os;
    os << '.' << name << ".tmp-" << ::getpid() << '-' << g_counter.fetch_add(1);
    tmp = (fs::path(dir) / os.str()).string();
    err = create_exclusive(tmp, text);
  }
  if (err != 0) throw std::runtime_error("cannot write '" + tmp + "': " + errno_text(err));

  err = publish_noreplace(tmp, out.path);
  if (err == 0) {
    out.created = true;
    return out;
  }
  ::unlink(tmp.c_str());
  if (err == EEXIST) return out;
  if (err == EPERM || err == ENOTSUP || err == EOPNOTSUPP || err == EMLINK || err == ENOSYS) {
    // Neither exclusive rename nor hard links: create the file itself exclusively. It is
    // never replaced either way; only a reader racing this write could see it incomplete.
    err = create_exclusive(out.path, text);
    if (err == 0) {
      out.created = true;
      return out;
    }
    if (err == EEXIST) return out;
  }
  throw std::runtime_error("cannot move '" + tmp + "' into place as '" + out.path + "': " + errno_text(err));
}

std::string read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace moecheck
