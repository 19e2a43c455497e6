// Reading a kernel pack (docs/packs.md): a read-only SQLite file with its own
// application_id holding a manifest, rule sources, compiled binaries and tuning decisions,
// each blob with its SHA-256. This part needs only support and SQLite (the fuzz build links
// it alone); pack/pack_loader.h turns an entry into a runnable kernel.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fuseopt::pack {

namespace db {
class Connection;
}

/// PRAGMA application_id of a pack: 'OPKP' (the cache is 'OPTK').
inline constexpr int64_t kPackApplicationId = 0x4F504B50;
/// PRAGMA user_version and manifest format_version of the layout described in docs/packs.md.
inline constexpr int64_t kPackFormatVersion = 1;

/// The schema of a pack, created by the builder (docs/packs.md lists it).
extern const char* const kPackSchema;

struct RuleEntry {
  std::string name;
  std::string source;
  std::string sha256;  ///< hex digest of source, as stored
};

struct BinaryEntry {
  int64_t id = 0;
  std::string rule;
  std::string config;         ///< ir::Kernel::config_name(), e.g. "adam_amsgrad0_maximize0"
  std::string options;        ///< "amsgrad=0,maximize=0" (declaration order)
  std::string target;         ///< "host", "x86-64-v3", "sm_80", "sm_90", "ptx"
  std::string kind;           ///< "cpu", "cubin" or "ptx"
  std::string backend_target; ///< the Halide target string, or the CUDA arch: "sm_90", "compute_80"
  std::string ir_hash;        ///< hex SHA-256 of "fuseopt-ir-v1\n" + printed IR
  std::string name;           ///< the kernel's symbol prefix
  std::string schedule;       ///< e.g. "v8_u2_c16384"
  int64_t chunk_elements = 0;
  std::vector<std::string> phase_functions;
  int64_t size = 0;           ///< blob bytes
  std::string sha256;         ///< hex digest of the blob, as stored
  // CUDA binaries only (kind "cubin" or "ptx"; table cuda_launch): how to launch them.
  bool has_launch = false;    ///< a cuda_launch row exists
  int64_t block_size = 0;
  int64_t grid_limit = 0;
  std::string table_layout;   ///< codegen::cuda_table_layout() the code was generated for

  bool is_cuda() const { return kind == "cubin" || kind == "ptx"; }
};

/// The binary kinds of docs/packs.md.
inline constexpr const char* kKindCpu = "cpu";
inline constexpr const char* kKindCubin = "cubin";
inline constexpr const char* kKindPtx = "ptx";
/// The arch of the PTX a pack carries (target "ptx"): the oldest SM the cubins are built for,
/// so the driver can JIT it for every GPU from compute capability 8.0 on.
inline constexpr const char* kPackPtxArch = "compute_80";

/// Why a blob is not what its kind says ("" when it is): a cubin is an ELF file for
/// EM_CUDA whose header names the SM of `backend_target`; PTX is text with a `.version` line
/// and a `.target` matching `backend_target`. Blob checks beyond the SHA-256, for verify and
/// before handing bytes to the driver.
std::string check_blob_format(const BinaryEntry& entry, const std::string& blob);

/// The SM number a cubin's ELF header records (e.g. 90), or 0 when `blob` is not a CUDA ELF
/// file.
int cubin_sm(const std::string& blob);

struct DecisionEntry {
  std::string ir_hash;
  std::string problem_key;
  std::string device_class;
  std::string config_json;
  std::string source;
  std::string sha256;  ///< hex digest of config_json
};

/// An ed25519 signature of content_digest() (hex), with the signer's public key (hex).
struct PackSignature {
  std::string public_key;
  std::string signature;
};

/// The hex SHA-256 of everything a pack says, in a canonical text (docs/packs.md): the
/// manifest, and the hashes and metadata of every rule, binary and decision. What a
/// signature signs.
std::string content_digest(db::Connection& connection);

class PackReader {
 public:
  /// Opens and checks the header: a SQLite file with the pack application_id, a known
  /// format version and kernel ABI version, and a complete manifest. Throws UserError with
  /// the reason ("not a kernel pack", "truncated or damaged", "format version 7 ...").
  /// `expected_abi` 0 skips the ABI check (inspect and verify).
  explicit PackReader(const std::string& path, int64_t expected_abi = 0);
  ~PackReader();
  PackReader(const PackReader&) = delete;
  PackReader& operator=(const PackReader&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& manifest() const { return manifest_; }
  int64_t abi_version() const;

  std::vector<RuleEntry> rules();
  std::vector<BinaryEntry> binaries();
  std::vector<DecisionEntry> decisions();
  /// The blob of a binary, its SHA-256 checked. Throws UserError on a mismatch.
  std::string read_blob(const BinaryEntry& entry);

  std::string content_digest();
  std::vector<PackSignature> signatures();

  /// Every check `fuseopt pack verify` makes: SQLite's integrity check, the manifest, each
  /// hash. Empty when the pack is sound.
  std::vector<std::string> verify();

 private:
  std::string path_;
  std::unique_ptr<db::Connection> db_;
  std::map<std::string, std::string> manifest_;
  bool has_cuda_launch_ = false;  // packs written before CUDA targets existed lack the table
};

/// "amsgrad=0,maximize=0" -> {{"amsgrad","0"},...}.
std::map<std::string, std::string> parse_option_list(const std::string& options);

}  // namespace fuseopt::pack
