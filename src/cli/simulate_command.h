#pragma once
// `lifeline simulate`: enrolls and drives many simulated devices against a real home (sim/simulator.h).
#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace lifeline::cli {

struct SimulateOptions {
  std::vector<std::string> homes;
  std::string home_config;
  std::string pki_dir;
  std::string state_dir;
  std::string prefix = "SIM";
  int devices = 100;
  int sites = 10;
  int customers = 1;
  std::string heartbeat_interval = "60s";
  double jitter = 0.1;
  double alert_rate = 1.0;
  std::string storm_every = "0";
  int storm_size = 200;
  std::string silence_every = "0";
  std::string silence_for = "2m";
  std::string duration = "0";
  long long count = 0;
  std::string drain = "10s";
  int threads = 4;
  int connections = 32;
  int batch_size = 100;
  std::string timeout = "10s";
  std::string progress = "10s";
  bool same_batch_id = false;
  unsigned long long seed = 0;
};

CLI::App* AddSimulateCommand(CLI::App& app, SimulateOptions& options);
int RunSimulateCommand(const SimulateOptions& options);

}  // namespace lifeline::cli
