#pragma once

#include "protocol/blob_type.hpp"
#include "protocol/byte_io.hpp"
#include "state/storage.hpp"
#include "state/unique_fd.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

// The linear image backend (`--tpmstate backend-uri=file://<path>`, protocol.md §7.3): all blobs
// in one preallocated regular file or block device, in swtpm's layout, so swtpm reads what we
// write and the other way round. Unlike swtpm, a live section is never overwritten in place:
//
//   1. the new blob goes to free space (the slot of the previous-but-one version, a hole, or
//      the end), fsync per policy;
//   2. one pwrite of the 192-byte header (inside the first 512-byte sector, which storage
//      devices write atomically) switches the table entry to it and keeps the previous version
//      as the backup entry, fsync per policy.
//
// A crash at any point leaves either the old or the new header, each pointing at complete
// sections. Table entries 0..2 are the blobs as swtpm numbers them; 3..5 hold the previous good
// copy of each (backup); 6..14 cover free gaps between sections, because swtpm's compaction
// assumes sections are packed without holes. swtpm treats 3..14 as other TPMs' files: it keeps
// them and moves them along when it compacts (verified with swtpm 0.7.1, doc/durability.md).
namespace vtpm::state
{

inline constexpr std::size_t kImageHeaderSize = 192;
inline constexpr std::uint64_t kImageMagic = 0x737774706d6c696eULL; // "swtpmlin"
inline constexpr std::uint8_t kImageVersion = 1;
inline constexpr std::size_t kImageEntries = 15;

// One table entry (little-endian u32 triple on disk). offset 0 = unused.
struct ImageEntry
{
    std::uint32_t offset = 0;
    std::uint32_t dataLength = 0;
    std::uint32_t sectionLength = 0;

    [[nodiscard]] bool used() const noexcept { return offset != 0; }
    [[nodiscard]] std::uint64_t end() const noexcept
    {
        return std::uint64_t{offset} + sectionLength;
    }
    friend bool operator==(const ImageEntry&, const ImageEntry&) = default;
};

using ImageTable = std::array<ImageEntry, kImageEntries>;

// The header, or why it is not one.
struct ImageHeader
{
    ImageTable table{};
    bool blank = false;       // all zero (or an empty file): format it
    std::optional<std::string> error;
};

// Parses the first bytes of an image (fewer than kImageHeaderSize if the image is shorter).
ImageHeader parseImageHeader(protocol::ByteView bytes);
// The 192 header bytes for a table.
std::array<std::uint8_t, kImageHeaderSize> serializeImageHeader(const ImageTable& table);

class SyncWorker;

class FileStorage final : public Storage
{
public:
    FileStorage(std::filesystem::path path, StorageOptions options);
    FileStorage(const FileStorage&) = delete;
    FileStorage& operator=(const FileStorage&) = delete;
    FileStorage(FileStorage&&) = delete;
    FileStorage& operator=(FileStorage&&) = delete;
    ~FileStorage() override;

    // Opens (creating a missing regular file) and reads the header; formats an empty or zeroed
    // image. Throws std::runtime_error/std::system_error naming the file if it cannot be used:
    // a damaged header is never formatted over.
    void init() override;
    [[nodiscard]] LoadResult load(protocol::BlobType type) override;
    [[nodiscard]] std::optional<BlobError> store(protocol::BlobType type,
                                                 protocol::ByteView plaintext) override;
    [[nodiscard]] std::optional<BlobError> remove(protocol::BlobType type,
                                                  bool mustExist) override;
    [[nodiscard]] std::optional<std::uint64_t> storedSize(protocol::BlobType type) const override;
    // fcntl write lock on the image itself (protocol.md §7.7).
    [[nodiscard]] bool lock(unsigned retries, std::string* error = nullptr) override;
    void unlock() noexcept override;
    [[nodiscard]] bool locked() const noexcept override { return locked_; }
    // "file:///path (permall)".
    [[nodiscard]] std::string describe(protocol::BlobType type) const override;
    void flush() override;

    [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
    // The table as last read or written (for tests).
    [[nodiscard]] const ImageTable& table() const noexcept { return table_; }

private:
    enum class Known
    {
        Unknown,
        Good,
        Damaged,
        Absent,
    };

    struct SectionRead
    {
        LoadResult result;
        bool damaged = false;
    };

    [[nodiscard]] std::string where() const;
    [[nodiscard]] std::string describeBackup(protocol::BlobType type) const;
    [[nodiscard]] std::optional<std::string> readHeader(ImageTable& table);
    [[nodiscard]] std::uint64_t currentSize() const;
    [[nodiscard]] SectionRead readSection(const ImageEntry& entry, const std::string& what) const;
    [[nodiscard]] std::optional<BlobError> writeTable(const ImageTable& table,
                                                      protocol::BlobType type);
    [[nodiscard]] std::optional<ImageTable> plan(const ImageTable& base, std::size_t slot,
                                                 std::uint32_t length, std::string& why) const;
    [[nodiscard]] std::optional<BlobError> takeWorkerError();
    [[nodiscard]] Known& known(protocol::BlobType type) noexcept;
    void step(std::string_view name) const;
    void format();
    // Before a fall-back makes the image writable again: a copy of the damaged image beside it
    // (<image>.corrupt), so the evidence survives the next store. Regular files only.
    void preserveDamagedImage() const;

    std::filesystem::path path_;
    StorageOptions options_;
    UniqueFd fd_;
    bool blockDevice_ = false;
    std::uint64_t capacity_ = 0; // block devices: fixed size
    bool locked_ = false;
    ImageTable table_{};
    std::array<Known, protocol::kAllBlobTypes.size()> known_{};
    std::unique_ptr<SyncWorker> worker_; // declared last: drains before fd_ closes
};

} // namespace vtpm::state
