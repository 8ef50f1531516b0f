#include "support/postgres_server.h"

#include "store/postgres/session.h"

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace lifeline::testing {
namespace {

namespace fs = std::filesystem;

const fs::path kBin = "/usr/lib/postgresql/15/bin";
constexpr int kPort = 5432;  // only names the socket file; nothing listens on TCP

/// Who runs initdb and postgres: ourselves, or the postgres user when we are root.
struct ServerUser {
  bool switch_user = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

ServerUser WhoRunsTheServer() {
  ServerUser user;
  if (geteuid() != 0) {
    return user;
  }
  const passwd* pw = getpwnam("postgres");
  if (pw == nullptr) {
    throw std::runtime_error("running as root and there is no 'postgres' user (install postgresql-15)");
  }
  user.switch_user = true;
  user.uid = pw->pw_uid;
  user.gid = pw->pw_gid;
  return user;
}

void GiveTo(const ServerUser& user, const fs::path& path) {
  if (user.switch_user && chown(path.c_str(), user.uid, user.gid) != 0) {
    throw std::runtime_error("cannot chown " + path.string() + " to postgres");
  }
}

/// Starts argv with stdout and stderr appended to `log`, as `user`. With `die_with_parent` the child
/// gets SIGQUIT (PostgreSQL's immediate shutdown) if this process dies first.
pid_t Spawn(const std::vector<std::string>& argv, const fs::path& log, const ServerUser& user,
            bool die_with_parent) {
  std::vector<char*> args;
  for (const auto& a : argv) {
    args.push_back(const_cast<char*>(a.c_str()));
  }
  args.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    throw std::runtime_error("fork failed");
  }
  if (pid == 0) {
    const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    const int in = open("/dev/null", O_RDONLY);
    if (out < 0 || in < 0) {
      _exit(126);
    }
    dup2(in, 0);
    dup2(out, 1);
    dup2(out, 2);
    if (user.switch_user) {
      if (setgroups(0, nullptr) != 0 || setgid(user.gid) != 0 || setuid(user.uid) != 0) {
        _exit(126);
      }
    }
    // After the change of user: a credential change clears the parent-death signal.
    if (die_with_parent) {
      prctl(PR_SET_PDEATHSIG, SIGQUIT);
      if (getppid() != parent) {
        _exit(0);
      }
    }
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

/// Runs argv to completion (at most `timeout`); its exit code, or -1 when it had to be killed.
int Run(const std::vector<std::string>& argv, const fs::path& log, const ServerUser& user,
        std::chrono::seconds timeout = std::chrono::seconds(120)) {
  const pid_t pid = Spawn(argv, log, user, /*die_with_parent=*/true);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// A freshly initialised cluster, made once per machine and user and copied for each server:
/// initdb takes about two seconds, a copy a tenth of that. Built beside and renamed into place, so
/// a half-made template is never used; a file lock keeps parallel test processes from building
/// it twice.
fs::path TemplateCluster(const ServerUser& user) {
  const fs::path base = fs::temp_directory_path();
  const fs::path ready = base / fmt::format("lifeline-pg15-template-{}", geteuid());
  const int lock = open((base / fmt::format("lifeline-pg15-template-{}.lock", geteuid())).c_str(),
                        O_RDWR | O_CREAT, 0600);
  if (lock < 0 || flock(lock, LOCK_EX) != 0) {
    throw std::runtime_error("cannot lock the PostgreSQL template directory");
  }
  struct Unlock {
    int fd;
    ~Unlock() { close(fd); }
  } unlock{lock};
  if (fs::exists(ready / "PG_VERSION")) {
    return ready;
  }
  const fs::path building = base / fmt::format("lifeline-pg15-template-{}.building", geteuid());
  std::error_code ignored;
  fs::remove_all(building, ignored);
  fs::create_directories(building);
  GiveTo(user, building);
  const fs::path log = base / fmt::format("lifeline-pg15-template-{}.log", geteuid());
  const int code = Run({(kBin / "initdb").string(), "-D", (building / "data").string(), "-A", "trust", "-U",
                        "lifeline", "--locale=C", "-E", "UTF8", "--no-sync"},
                       log, user);
  if (code != 0) {
    throw std::runtime_error(fmt::format("initdb failed ({}):\n{}", code, ReadFile(log)));
  }
  fs::remove_all(ready, ignored);
  fs::rename(building / "data", ready);
  fs::remove_all(building, ignored);
  return ready;
}

PostgresServer* shared_server = nullptr;

}  // namespace

PostgresServer::PostgresServer() {
  const ServerUser user = WhoRunsTheServer();
  GiveTo(user, dir());
  const fs::path data = dir() / "data";
  const fs::path log = dir() / "postgres.log";
  const fs::path cluster = TemplateCluster(user);
  // cp -a keeps the owner (postgres) and the 0700 mode PostgreSQL insists on.
  if (int code = Run({"/bin/cp", "-a", cluster.string(), data.string()}, log, ServerUser{}); code != 0) {
    throw std::runtime_error(fmt::format("cannot copy the template cluster ({}):\n{}", code, ReadFile(log)));
  }
  pid_ = Spawn({(kBin / "postgres").string(), "-D", data.string(), "-k", dir().string(), "-p",
                std::to_string(kPort), "-c", "listen_addresses=", "-c", "max_connections=200"},
               log, user, /*die_with_parent=*/true);
  // Ready when a connection succeeds; bounded, and a server that exits stops the wait at once.
  struct StopOnThrow {
    PostgresServer* server;
    bool armed = true;
    ~StopOnThrow() {
      if (armed) {
        server->Stop();
      }
    }
  } stop_on_throw{this};
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  std::string last_error;
  for (;;) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      throw std::runtime_error("PostgreSQL exited during start-up:\n" + ReadFile(log));
    }
    auto probe = store::postgres::Open({.conninfo = ConnInfo("postgres"), .pool_size = 1,
                                        .connect_timeout = std::chrono::seconds(2)});
    if (probe) {
      break;
    }
    last_error = store::sql::LastErrorDetail();
    if (std::chrono::steady_clock::now() > deadline) {
      throw std::runtime_error(fmt::format("PostgreSQL did not accept connections within 60 s ({}):\n{}",
                                           last_error, ReadFile(log)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop_on_throw.armed = false;
}

PostgresServer::~PostgresServer() { Stop(); }

void PostgresServer::Stop() {
  if (pid_ <= 0) {
    return;
  }
  // Immediate shutdown: no checkpoint (whose fsyncs took seconds), as the cluster is thrown away.
  kill(pid_, SIGQUIT);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pid_ = -1;
}

std::string PostgresServer::ConnInfo(const std::string& database) const {
  return fmt::format("host={} port={} user=lifeline dbname={}", dir().string(), kPort, database);
}

std::string PostgresServer::CreateDatabase() {
  const std::string name = fmt::format("test_{}", ++next_database_);
  auto admin = store::postgres::Open({.conninfo = ConnInfo("postgres"), .pool_size = 1});
  if (!admin) {
    throw std::runtime_error("cannot connect to the test PostgreSQL: " + store::sql::LastErrorDetail());
  }
  auto created = (*admin)->WithSession(
      [&](store::sql::Session& s) { return s.ExecScript("CREATE DATABASE " + name); });
  if (!created) {
    throw std::runtime_error("CREATE DATABASE failed: " + store::sql::LastErrorDetail());
  }
  return ConnInfo(name);
}

void PostgresEnvironment::SetUp() {
  try {
    shared_server = new PostgresServer();
  } catch (const std::exception& e) {
    FAIL() << "cannot start the test PostgreSQL server: " << e.what();
  }
}

void PostgresEnvironment::TearDown() {
  delete shared_server;
  shared_server = nullptr;
}

PostgresServer* SharedPostgres() { return shared_server; }

}  // namespace lifeline::testing
