#include "pack/pack_reader.h"

#include <sqlite3.h>
#include <sys/stat.h>

#include <exception>

#include "pack/pack_db.h"
#include "support/error.h"
#include "support/sha256.h"

namespace fuseopt::pack {

const char* const kPackSchema = R"sql(
CREATE TABLE manifest (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE rule (name TEXT PRIMARY KEY, source TEXT NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE binary (
  id INTEGER PRIMARY KEY,
  rule TEXT NOT NULL,
  config TEXT NOT NULL,
  options TEXT NOT NULL,
  target TEXT NOT NULL,
  kind TEXT NOT NULL,
  backend_target TEXT NOT NULL,
  ir_hash TEXT NOT NULL,
  name TEXT NOT NULL,
  schedule TEXT NOT NULL,
  chunk_elements INTEGER NOT NULL,
  phase_functions TEXT NOT NULL,
  blob BLOB NOT NULL,
  sha256 TEXT NOT NULL,
  UNIQUE (config, target, kind));
CREATE TABLE decision (
  ir_hash TEXT NOT NULL,
  problem_key TEXT NOT NULL,
  device_class TEXT NOT NULL,
  config_json TEXT NOT NULL,
  source TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  PRIMARY KEY (ir_hash, problem_key, device_class));
CREATE TABLE signature (public_key TEXT NOT NULL, signature TEXT NOT NULL);
CREATE TABLE cuda_launch (
  binary INTEGER PRIMARY KEY,
  block_size INTEGER NOT NULL,
  grid_limit INTEGER NOT NULL,
  table_layout TEXT NOT NULL);
)sql";

namespace {

const char* const kRequiredKeys[] = {"format_version", "abi_version", "fuseopt_version",
                                     "created", "targets", "rules"};

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> parts;
  if (text.empty()) return parts;
  size_t start = 0;
  while (true) {
    const size_t at = text.find(separator, start);
    parts.push_back(text.substr(start, at == std::string::npos ? std::string::npos : at - start));
    if (at == std::string::npos) break;
    start = at + 1;
  }
  return parts;
}

int64_t to_int(const std::string& text, const std::string& what, const std::string& path) {
  try {
    size_t used = 0;
    const long long value = std::stoll(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  throw UserError("kernel pack '" + path + "' has a malformed " + what + " '" + text + "'");
}

bool has_table(db::Connection& connection, const char* name) {
  db::Statement row(connection,
                    "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1");
  row.bind_text(1, name);
  return row.step() && row.column_int(0) > 0;
}

uint32_t read_u32(const std::string& bytes, size_t at) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<unsigned char>(bytes[at + i]);
  return value;
}

// "sm_90" / "compute_80" -> 90 / 80; 0 otherwise.
int arch_number(const std::string& arch) {
  const size_t underscore = arch.find('_');
  if (underscore == std::string::npos) return 0;
  try {
    size_t used = 0;
    const int value = std::stoi(arch.substr(underscore + 1), &used);
    return used == arch.size() - underscore - 1 ? value : 0;
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

int cubin_sm(const std::string& blob) {
  // ELF64 little-endian, e_machine EM_CUDA (190). The SM sits in e_flags: bits 8-15 from
  // the CUDA ELF ABI version 8 on (EI_ABIVERSION, byte 8; CUDA 12.8 and later), bits 0-7
  // before it.
  constexpr size_t kHeaderBytes = 64;
  if (blob.size() < kHeaderBytes || blob.compare(0, 4, "\x7f" "ELF") != 0) return 0;
  if (blob[4] != 2 || blob[5] != 1) return 0;  // 64-bit, little-endian
  const unsigned machine = static_cast<unsigned char>(blob[18]) |
                           (static_cast<unsigned>(static_cast<unsigned char>(blob[19])) << 8);
  if (machine != 190) return 0;
  const uint32_t flags = read_u32(blob, 48);
  const int abi_version = static_cast<unsigned char>(blob[8]);
  return static_cast<int>(abi_version >= 8 ? (flags >> 8) & 0xff : flags & 0xff);
}

std::string check_blob_format(const BinaryEntry& entry, const std::string& blob) {
  if (entry.kind == kKindCubin) {
    const int sm = cubin_sm(blob);
    if (sm == 0) return "not a CUDA cubin (no ELF header for EM_CUDA)";
    if (sm != arch_number(entry.backend_target)) {
      return "a cubin for sm_" + std::to_string(sm) + ", recorded as " + entry.backend_target;
    }
    return "";
  }
  if (entry.kind == kKindPtx) {
    if (blob.find(".version ") == std::string::npos) return "not PTX (no .version line)";
    const int arch = arch_number(entry.backend_target);
    if (arch == 0 || blob.find("\n.target sm_" + std::to_string(arch)) == std::string::npos) {
      return "PTX without '.target sm_" + std::to_string(arch) + "' (recorded as " +
             entry.backend_target + ")";
    }
    return "";
  }
  return "";
}

std::map<std::string, std::string> parse_option_list(const std::string& options) {
  std::map<std::string, std::string> values;
  for (const std::string& item : split(options, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) continue;
    values[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return values;
}

PackReader::PackReader(const std::string& path, int64_t expected_abi) : path_(path) {
  struct stat info;
  if (stat(path.c_str(), &info) != 0) throw UserError("no kernel pack at '" + path + "'");
  if (!S_ISREG(info.st_mode)) throw UserError("'" + path + "' is not a file");
  db_ = std::make_unique<db::Connection>(path, true);
  int64_t application_id = 0;
  try {
    application_id = db_->query_int("PRAGMA application_id");
  } catch (const UserError&) {
    throw UserError("'" + path + "' is not a kernel pack (not an SQLite database, or "
                    "truncated or damaged)");
  }
  if (application_id != kPackApplicationId) {
    throw UserError("'" + path + "' is not a kernel pack (application_id " +
                    std::to_string(application_id) + ", expected " +
                    std::to_string(kPackApplicationId) + ")");
  }
  try {
    db::Statement rows(*db_, "SELECT key, value FROM manifest");
    while (rows.step()) manifest_[rows.column_text(0)] = rows.column_text(1);
  } catch (const UserError& e) {
    throw UserError("kernel pack '" + path + "' is truncated or damaged: " + e.what());
  }
  for (const char* key : kRequiredKeys) {
    if (!manifest_.count(key)) {
      throw UserError("kernel pack '" + path + "' is damaged: its manifest has no '" + key +
                      "'");
    }
  }
  const int64_t format = to_int(manifest_["format_version"], "format version", path);
  if (format != kPackFormatVersion) {
    throw UserError("kernel pack '" + path + "' has format version " + std::to_string(format) +
                    "; this fuseopt reads format version " +
                    std::to_string(kPackFormatVersion) + " only");
  }
  const int64_t abi = to_int(manifest_["abi_version"], "kernel ABI version", path);
  if (expected_abi != 0 && abi != expected_abi) {
    throw UserError("kernel pack '" + path + "' was built for kernel ABI version " +
                    std::to_string(abi) + "; this runtime has ABI version " +
                    std::to_string(expected_abi) + " (rebuild the pack)");
  }
  try {
    has_cuda_launch_ = has_table(*db_, "cuda_launch");
  } catch (const UserError& e) {
    throw UserError("kernel pack '" + path + "' is truncated or damaged: " + e.what());
  }
}

PackReader::~PackReader() = default;

int64_t PackReader::abi_version() const {
  return to_int(manifest_.at("abi_version"), "kernel ABI version", path_);
}

std::vector<RuleEntry> PackReader::rules() {
  std::vector<RuleEntry> rules;
  db::Statement rows(*db_, "SELECT name, source, sha256 FROM rule ORDER BY name");
  while (rows.step()) rules.push_back({rows.column_text(0), rows.column_text(1), rows.column_text(2)});
  return rules;
}

std::vector<BinaryEntry> PackReader::binaries() {
  std::vector<BinaryEntry> binaries;
  const std::string launch_columns =
      has_cuda_launch_ ? "l.binary IS NOT NULL, l.block_size, l.grid_limit, l.table_layout"
                       : "0, 0, 0, ''";
  const std::string launch_join =
      has_cuda_launch_ ? " LEFT JOIN cuda_launch l ON l.binary = b.id" : "";
  db::Statement rows(*db_,
                     ("SELECT b.id, b.rule, b.config, b.options, b.target, b.kind, "
                      "b.backend_target, b.ir_hash, b.name, b.schedule, b.chunk_elements, "
                      "b.phase_functions, length(b.blob), b.sha256, " + launch_columns +
                      " FROM binary b" + launch_join +
                      " ORDER BY b.rule, b.config, b.kind, b.target")
                         .c_str());
  while (rows.step()) {
    BinaryEntry e;
    e.id = rows.column_int(0);
    e.rule = rows.column_text(1);
    e.config = rows.column_text(2);
    e.options = rows.column_text(3);
    e.target = rows.column_text(4);
    e.kind = rows.column_text(5);
    e.backend_target = rows.column_text(6);
    e.ir_hash = rows.column_text(7);
    e.name = rows.column_text(8);
    e.schedule = rows.column_text(9);
    e.chunk_elements = rows.column_int(10);
    e.phase_functions = split(rows.column_text(11), '\n');
    e.size = rows.column_int(12);
    e.sha256 = rows.column_text(13);
    e.has_launch = rows.column_int(14) != 0;
    e.block_size = rows.column_int(15);
    e.grid_limit = rows.column_int(16);
    e.table_layout = rows.column_text(17);
    binaries.push_back(std::move(e));
  }
  return binaries;
}

std::vector<DecisionEntry> PackReader::decisions() {
  std::vector<DecisionEntry> decisions;
  db::Statement rows(*db_,
                     "SELECT ir_hash, problem_key, device_class, config_json, source, sha256 "
                     "FROM decision ORDER BY ir_hash, device_class, problem_key");
  while (rows.step()) {
    decisions.push_back({rows.column_text(0), rows.column_text(1), rows.column_text(2),
                         rows.column_text(3), rows.column_text(4), rows.column_text(5)});
  }
  return decisions;
}

std::string PackReader::read_blob(const BinaryEntry& entry) {
  db::Statement row(*db_, "SELECT blob FROM binary WHERE id = ?1");
  row.bind(1, entry.id);
  if (!row.step()) {
    throw UserError("kernel pack '" + path_ + "' lost binary " + std::to_string(entry.id));
  }
  std::string blob = row.column_blob(0);
  if (support::sha256_hex(blob) != entry.sha256) {
    throw UserError("kernel pack '" + path_ + "' is damaged: the binary '" + entry.name +
                    "' for " + entry.target + " does not match its SHA-256 (tampered or "
                    "corrupted)");
  }
  return blob;
}

std::string content_digest(db::Connection& connection) {
  support::Sha256 hash;
  auto line = [&](const std::string& text) {
    hash.update(text);
    hash.update("\n");
  };
  line("fuseopt-pack-content-v1");
  {
    db::Statement rows(connection, "SELECT key, value FROM manifest ORDER BY key");
    while (rows.step()) line("manifest\t" + rows.column_text(0) + "\t" + rows.column_text(1));
  }
  {
    db::Statement rows(connection, "SELECT name, sha256 FROM rule ORDER BY name");
    while (rows.step()) line("rule\t" + rows.column_text(0) + "\t" + rows.column_text(1));
  }
  {
    db::Statement rows(connection,
                       "SELECT rule, config, options, target, kind, backend_target, ir_hash, "
                       "name, schedule, chunk_elements, phase_functions, sha256 FROM binary "
                       "ORDER BY rule, config, target, kind");
    while (rows.step()) {
      std::string text = "binary";
      for (int c = 0; c < 12; ++c) text += "\t" + rows.column_text(c);
      line(text);
    }
  }
  {
    db::Statement rows(connection,
                       "SELECT ir_hash, problem_key, device_class, source, sha256 FROM decision "
                       "ORDER BY ir_hash, problem_key, device_class");
    while (rows.step()) {
      std::string text = "decision";
      for (int c = 0; c < 5; ++c) text += "\t" + rows.column_text(c);
      line(text);
    }
  }
  if (has_table(connection, "cuda_launch")) {
    db::Statement rows(connection,
                       "SELECT b.rule, b.config, b.target, b.kind, l.block_size, l.grid_limit, "
                       "l.table_layout FROM cuda_launch l JOIN binary b ON b.id = l.binary "
                       "ORDER BY b.rule, b.config, b.target, b.kind");
    while (rows.step()) {
      std::string text = "cuda";
      for (int c = 0; c < 7; ++c) text += "\t" + rows.column_text(c);
      line(text);
    }
  }
  return support::to_hex(hash.finish());
}

std::string PackReader::content_digest() { return pack::content_digest(*db_); }

std::vector<PackSignature> PackReader::signatures() {
  std::vector<PackSignature> signatures;
  db::Statement rows(*db_, "SELECT public_key, signature FROM signature ORDER BY public_key");
  while (rows.step()) signatures.push_back({rows.column_text(0), rows.column_text(1)});
  return signatures;
}

std::vector<std::string> PackReader::verify() {
  std::vector<std::string> problems;
  try {
    db::Statement check(*db_, "PRAGMA integrity_check");
    while (check.step()) {
      const std::string line = check.column_text(0);
      if (line != "ok") problems.push_back("SQLite integrity: " + line);
    }
    if (db_->query_int("PRAGMA user_version") != kPackFormatVersion) {
      problems.push_back("PRAGMA user_version differs from the manifest's format version");
    }
    for (const RuleEntry& rule : rules()) {
      if (support::sha256_hex(rule.source) != rule.sha256) {
        problems.push_back("rule '" + rule.name + "': source does not match its SHA-256");
      }
    }
    std::map<std::string, bool> rule_names;
    for (const RuleEntry& rule : rules()) rule_names[rule.name] = true;
    for (const std::string& name : split(manifest_["rules"], ',')) {
      if (!rule_names.count(name)) problems.push_back("manifest lists rule '" + name + "' that is absent");
    }
    for (const BinaryEntry& entry : binaries()) {
      db::Statement row(*db_, "SELECT blob FROM binary WHERE id = ?1");
      row.bind(1, entry.id);
      const std::string blob = row.step() ? row.column_blob(0) : std::string();
      const std::string what =
          "binary " + entry.config + " for " + entry.target + " (" + entry.kind + ")";
      if (support::sha256_hex(blob) != entry.sha256) {
        problems.push_back(what + ": blob does not match its SHA-256");
      } else if (const std::string bad = check_blob_format(entry, blob); !bad.empty()) {
        problems.push_back(what + ": " + bad);
      }
      if (entry.kind != kKindCpu && entry.kind != kKindCubin && entry.kind != kKindPtx) {
        problems.push_back(what + ": unknown kind '" + entry.kind + "'");
      }
      if (entry.is_cuda() && !entry.has_launch) {
        problems.push_back(what + ": no cuda_launch row (block size, tensor table layout)");
      }
      if (!rule_names.count(entry.rule)) {
        problems.push_back("binary " + entry.config + ": its rule '" + entry.rule + "' is absent");
      }
    }
    for (const DecisionEntry& d : decisions()) {
      if (support::sha256_hex(d.config_json) != d.sha256) {
        problems.push_back("decision for " + d.ir_hash.substr(0, 12) + " " + d.problem_key +
                           ": config does not match its SHA-256");
      }
    }
  } catch (const UserError& e) {
    problems.push_back(e.what());
  }
  return problems;
}

}  // namespace fuseopt::pack
