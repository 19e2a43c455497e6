// libFuzzer target: arbitrary bytes as a kernel pack through the pack reader (header and
// manifest checks, listing rules, binaries (with their CUDA launch rows) and decisions,
// reading every blob with its hash and checking its format (cubin ELF header, PTX), the
// content digest and signatures, verify()). Bad input must only ever raise UserError: any
// crash, hang or leak is a bug. Seeds: tests/fuzz/corpus/fuzz_pack_reader/ (small packs with
// every table filled, made by make_pack_seed.py).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "pack/pack_reader.h"
#include "support/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > (1 << 20)) return 0;
  static const std::string path =
      "/tmp/fuseopt_fuzz_pack_" + std::to_string(getpid()) + ".pack";
  {
    FILE* file = std::fopen(path.c_str(), "wb");
    if (!file) return 0;
    std::fwrite(data, 1, size, file);
    std::fclose(file);
  }
  try {
    fuseopt::pack::PackReader reader(path, 2);
    (void)reader.rules();
    (void)reader.decisions();
    for (const auto& entry : reader.binaries()) {
      try {
        (void)fuseopt::pack::check_blob_format(entry, reader.read_blob(entry));
      } catch (const fuseopt::UserError&) {
      }
    }
    (void)reader.signatures();
    (void)reader.content_digest();
    (void)reader.verify();
  } catch (const fuseopt::UserError&) {
  }
  std::remove(path.c_str());
  return 0;
}
