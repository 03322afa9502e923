#include "state/file_storage.hpp"

#include "state/durability.hpp"
#include "state/posix_io.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <limits>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace vtpm::state
{

namespace
{
// Images are a few tens of KiB; a copy is refused beyond this (a misconfigured disk).
constexpr std::uint64_t kMaxImageCopy = std::uint64_t{64} * 1024 * 1024;
} // namespace

namespace rc = protocol::rc;
using posix::errnoText;

namespace
{

constexpr std::size_t kBlobSlots = 3;   // entries 0..2: permall, volatilestate, savestate
constexpr std::size_t kBackupBase = 3;  // entries 3..5: their previous good copies
constexpr std::size_t kHoleBase = 6;    // entries 6..14: free gaps between sections
constexpr std::size_t kTableOffset = 12;
constexpr std::size_t kEntrySize = 12;
constexpr std::uint64_t kMaxImageEnd = std::numeric_limits<std::uint32_t>::max();

std::size_t slotOf(protocol::BlobType type) noexcept
{
    return static_cast<std::size_t>(type) - 1;
}

// Little-endian reads through ByteReader (which is big-endian): take the bytes, assemble here.
template <std::unsigned_integral T>
T readLe(protocol::ByteReader& in) noexcept
{
    T value = 0;
    const auto bytes = in.bytes(sizeof(T));
    for (std::size_t i = bytes.size(); i-- > 0;)
    {
        value = static_cast<T>((value << 8U) | bytes[i]);
    }
    return value;
}

template <std::unsigned_integral T>
void writeLe(std::span<std::uint8_t> out, T value) noexcept
{
    for (std::uint8_t& byte : out.first(sizeof(T)))
    {
        byte = static_cast<std::uint8_t>(value & 0xffU);
        value = static_cast<T>(value >> 8U);
    }
}

std::uint32_t roundUpToPowerOfTwo(std::uint32_t n) noexcept
{
    return n <= 1 ? 1 : std::bit_ceil(n);
}

struct Extent
{
    std::uint64_t begin = 0;
    std::uint64_t end = 0;
};

// Sorted, merged extents of the used entries among `entries`.
std::vector<Extent> usedExtents(std::span<const ImageEntry> entries)
{
    std::vector<Extent> extents;
    for (const ImageEntry& entry : entries)
    {
        if (entry.used() && entry.sectionLength > 0)
        {
            extents.push_back({entry.offset, entry.end()});
        }
    }
    std::sort(extents.begin(), extents.end(),
              [](const Extent& a, const Extent& b) { return a.begin < b.begin; });
    std::vector<Extent> merged;
    for (const Extent& extent : extents)
    {
        if (!merged.empty() && extent.begin <= merged.back().end)
        {
            merged.back().end = std::max(merged.back().end, extent.end);
        }
        else
        {
            merged.push_back(extent);
        }
    }
    return merged;
}

// Free runs between kImageHeaderSize and the end of the last extent.
std::vector<Extent> gapsBetween(const std::vector<Extent>& used)
{
    std::vector<Extent> gaps;
    std::uint64_t cursor = kImageHeaderSize;
    for (const Extent& extent : used)
    {
        if (extent.begin > cursor)
        {
            gaps.push_back({cursor, extent.begin});
        }
        cursor = std::max(cursor, extent.end);
    }
    return gaps;
}

std::uint64_t endOf(const std::vector<Extent>& used)
{
    return used.empty() ? kImageHeaderSize : std::max<std::uint64_t>(kImageHeaderSize,
                                                                      used.back().end);
}

} // namespace

ImageHeader parseImageHeader(protocol::ByteView bytes)
{
    ImageHeader header;
    if (std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; }))
    {
        header.blank = true; // empty, or zeroed by the operator: a new image
        return header;
    }
    if (bytes.size() < kImageHeaderSize)
    {
        header.error = fmt::format("truncated: {} bytes, the header alone is {}", bytes.size(),
                                   kImageHeaderSize);
        return header;
    }
    protocol::ByteReader in(bytes.first(kImageHeaderSize));
    const auto magic = readLe<std::uint64_t>(in);
    const auto version = in.read<std::uint8_t>();
    (void)in.read<std::uint8_t>(); // padding
    const auto hdrSize = readLe<std::uint16_t>(in);
    for (ImageEntry& entry : header.table)
    {
        entry.offset = readLe<std::uint32_t>(in);
        entry.dataLength = readLe<std::uint32_t>(in);
        entry.sectionLength = readLe<std::uint32_t>(in);
    }
    if (!in.ok())
    {
        header.error = "truncated header";
    }
    else if (magic != kImageMagic)
    {
        header.error = fmt::format("bad magic {:#018x}: not a swtpm/vtpmd NVRAM image (zero its "
                                   "first 512 bytes to format it as a new one)",
                                   magic);
    }
    else if (version != kImageVersion)
    {
        header.error = fmt::format("unsupported image version {}", version);
    }
    else if (hdrSize != kImageHeaderSize)
    {
        header.error = fmt::format("bad header size {}", hdrSize);
    }
    return header;
}

std::array<std::uint8_t, kImageHeaderSize> serializeImageHeader(const ImageTable& table)
{
    std::array<std::uint8_t, kImageHeaderSize> out{};
    const std::span<std::uint8_t> bytes(out);
    writeLe<std::uint64_t>(bytes.subspan(0), kImageMagic);
    bytes[8] = kImageVersion;
    writeLe<std::uint16_t>(bytes.subspan(10), static_cast<std::uint16_t>(kImageHeaderSize));
    std::size_t at = kTableOffset;
    for (const ImageEntry& entry : table)
    {
        writeLe<std::uint32_t>(bytes.subspan(at), entry.offset);
        writeLe<std::uint32_t>(bytes.subspan(at + 4), entry.dataLength);
        writeLe<std::uint32_t>(bytes.subspan(at + 8), entry.sectionLength);
        at += kEntrySize;
    }
    return out;
}

FileStorage::FileStorage(std::filesystem::path path, StorageOptions options) :
    path_(std::move(path)), options_(std::move(options))
{
}

FileStorage::~FileStorage()
{
    try
    {
        flush();
    }
    catch (...) // NOLINT(bugprone-empty-catch): nothing sensible is left to do at destruction
    {
    }
}

std::string FileStorage::where() const
{
    return "file://" + path_.string();
}

std::string FileStorage::describe(protocol::BlobType type) const
{
    return fmt::format("{} ({})", where(), protocol::blobName(type));
}

std::string FileStorage::describeBackup(protocol::BlobType type) const
{
    return fmt::format("{} ({} backup copy)", where(), protocol::blobName(type));
}

FileStorage::Known& FileStorage::known(protocol::BlobType type) noexcept
{
    return known_.at(slotOf(type));
}

void FileStorage::step(std::string_view name) const
{
    if (options_.testHook)
    {
        options_.testHook(name);
    }
}

void FileStorage::init()
{
    const mode_t mode = options_.fileMode.value_or(kDefaultStateFileMode);
    bool created = false;
    int fd = posix::openAt(AT_FDCWD, path_.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT)
    {
        fd = posix::openAt(AT_FDCWD, path_.c_str(),
                           O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
        created = fd >= 0;
    }
    if (fd < 0)
    {
        throw std::system_error(errno, std::system_category(),
                                fmt::format("state image {}", path_.string()));
    }
    fd_.reset(fd);

    struct stat st
    {
    };
    if (::fstat(fd_.get(), &st) != 0)
    {
        throw std::system_error(errno, std::system_category(),
                                fmt::format("state image {}", path_.string()));
    }
    if (S_ISBLK(st.st_mode))
    {
        std::uint64_t bytes = 0;
        if (::ioctl(fd_.get(), BLKGETSIZE64, &bytes) != 0) // NOLINT(*-vararg)
        {
            throw std::system_error(errno, std::system_category(),
                                    fmt::format("state image {}: BLKGETSIZE64", path_.string()));
        }
        blockDevice_ = true;
        capacity_ = std::min(bytes, kMaxImageEnd);
        if (capacity_ < kImageHeaderSize)
        {
            throw std::runtime_error(fmt::format("state image {}: the device is too small",
                                                 path_.string()));
        }
    }
    else if (!S_ISREG(st.st_mode))
    {
        throw std::runtime_error(fmt::format(
            "state image {}: neither a regular file nor a block device", path_.string()));
    }
    else if (created || options_.fileMode)
    {
        if (::fchmod(fd_.get(), mode) != 0)
        {
            throw std::system_error(errno, std::system_category(),
                                    fmt::format("state image {}: chmod", path_.string()));
        }
    }

    ImageTable table{};
    if (const auto error = readHeader(table))
    {
        if (*error != "blank")
        {
            throw std::runtime_error(
                fmt::format("state image {}: {}; refusing to use it (nothing was written)",
                            path_.string(), *error));
        }
        format();
        return;
    }
    table_ = table;
}

std::uint64_t FileStorage::currentSize() const
{
    if (blockDevice_)
    {
        return capacity_;
    }
    struct stat st
    {
    };
    if (::fstat(fd_.get(), &st) != 0 || st.st_size < 0)
    {
        return 0;
    }
    return static_cast<std::uint64_t>(st.st_size);
}

// A flipped length or offset in the table makes an entry reach into another section (blobs,
// backups and free gaps never overlap) or past the end of the image.
static bool overlapsAnother(const ImageTable& table, std::size_t slot, std::uint64_t imageSize)
{
    const ImageEntry& mine = table.at(slot);
    if (mine.end() > imageSize) // a truncated image, or a flipped length
    {
        return true;
    }
    for (std::size_t i = 0; i < table.size(); ++i)
    {
        const ImageEntry& other = table.at(i);
        if (i != slot && other.used() && mine.offset < other.end() && other.offset < mine.end())
        {
            return true;
        }
    }
    return false;
}

// nullopt and the table on success; "blank" for an image to format; else what is wrong.
std::optional<std::string> FileStorage::readHeader(ImageTable& table)
{
    const std::uint64_t size = currentSize();
    protocol::Bytes bytes(static_cast<std::size_t>(std::min<std::uint64_t>(size,
                                                                           kImageHeaderSize)));
    if (const int err = posix::preadAll(fd_.get(), bytes, 0); err != 0)
    {
        return fmt::format("cannot read the header: {}", errnoText(err));
    }
    ImageHeader header = parseImageHeader(bytes);
    if (header.blank)
    {
        return std::string("blank");
    }
    if (header.error)
    {
        return "damaged header: " + *header.error;
    }
    table = header.table;
    return std::nullopt;
}

void FileStorage::format()
{
    spdlog::info("{}: formatting an empty image as a new NVRAM store", where());
    const ImageTable empty{};
    const auto bytes = serializeImageHeader(empty);
    if (const int err = posix::pwriteAll(fd_.get(), bytes, 0); err != 0)
    {
        throw std::system_error(err, std::system_category(),
                                fmt::format("state image {}: cannot write the header",
                                            path_.string()));
    }
    if (options_.fsync != FsyncPolicy::Never)
    {
        if (const int err = posix::fdatasyncRetry(fd_.get()); err != 0)
        {
            throw std::system_error(err, std::system_category(),
                                    fmt::format("state image {}: fsync", path_.string()));
        }
    }
    table_ = empty;
}

FileStorage::SectionRead FileStorage::readSection(const ImageEntry& entry,
                                                  const std::string& what) const
{
    SectionRead read;
    LoadResult& result = read.result;
    auto damaged = [&](std::string message)
    {
        result.error = BlobError{.code = rc::kFail,
                                 .message = fmt::format("{}: corrupt state: {}", what, message)};
        read.damaged = true;
        return read;
    };
    const std::uint64_t size = currentSize();
    if (entry.offset < kImageHeaderSize || entry.dataLength > entry.sectionLength)
    {
        return damaged(fmt::format("bad table entry (offset {}, length {}, section {})",
                                   entry.offset, entry.dataLength, entry.sectionLength));
    }
    if (entry.dataLength > kMaxStateFileSize ||
        std::uint64_t{entry.offset} + entry.dataLength > size)
    {
        return damaged(fmt::format("section at {} of {} bytes runs past the end of the image "
                                   "({} bytes)",
                                   entry.offset, entry.dataLength, size));
    }
    protocol::Bytes bytes(entry.dataLength);
    if (const int err = posix::preadAll(fd_.get(), bytes, entry.offset); err != 0)
    {
        result.error = posix::placeError(what, "cannot read", err);
        read.damaged = err == EIO || err == ENODATA;
        return read;
    }
    DecodeResult decoded = decodeFromStorage(bytes, options_.stateKey);
    if (decoded.error)
    {
        result.error = std::move(decoded.error);
        result.error->message = fmt::format("{}: corrupt state: {}", what, result.error->message);
        read.damaged = true;
        return read;
    }
    result.status = LoadStatus::Ok;
    result.plaintext = std::move(decoded.plaintext);
    return read;
}

LoadResult FileStorage::load(protocol::BlobType type)
{
    LoadResult result;
    if (!fd_)
    {
        result.error = BlobError{.code = rc::kFail,
                                 .message = describe(type) + ": storage not initialised"};
        return result;
    }
    if (const auto error = readHeader(table_))
    {
        result.error = BlobError{.code = rc::kFail,
                                 .message = fmt::format("{}: {}", where(), *error)};
        return result;
    }
    const ImageEntry primary = table_.at(slotOf(type));
    const ImageEntry backup = table_.at(kBackupBase + slotOf(type));
    SectionRead current;
    if (!primary.used())
    {
        // The header switch is atomic and remove() clears both entries, so a missing entry is
        // a blob never stored or deleted (swtpm deletes volatilestate without knowing of our
        // backup entry). Only a permall entry wiped while its backup remains means damage:
        // taking it for "absent" would manufacture a fresh TPM.
        if (type != protocol::BlobType::Permanent || !backup.used())
        {
            known(type) = Known::Absent;
            result.status = LoadStatus::NotFound;
            return result;
        }
        current.result.error = BlobError{
            .code = rc::kFail,
            .message = fmt::format("{}: corrupt state: the table entry is empty but a backup "
                                   "copy exists (damaged header)",
                                   describe(type))};
        current.damaged = true;
    }
    else
    {
        if (overlapsAnother(table_, slotOf(type), currentSize()))
        {
            // Which of two overlapping entries is wrong cannot be told; the section's own
            // checks decide whether this copy is usable. Say it loudly and keep the evidence.
            spdlog::critical("{}: damaged header: its table entry overlaps another section or "
                             "runs past the end of the image",
                             describe(type));
            preserveDamagedImage();
        }
        current = readSection(primary, describe(type));
    }
    if (current.result.status == LoadStatus::Ok)
    {
        known(type) = Known::Good;
        return std::move(current.result);
    }
    known(type) = current.damaged ? Known::Damaged : Known::Unknown;
    if (current.damaged)
    {
        preserveDamagedImage(); // whatever happens next may rewrite the header
    }
    if (!options_.backup || !current.damaged)
    {
        return std::move(current.result);
    }
    if (!backup.used())
    {
        current.result.error->message += " (no backup copy to fall back to)";
        return std::move(current.result);
    }
    SectionRead previous = readSection(backup, describeBackup(type));
    if (previous.result.status != LoadStatus::Ok)
    {
        current.result.error->message +=
            fmt::format(" (and the backup is unusable too: {})", previous.result.error->message);
        return std::move(current.result);
    }
    spdlog::critical("{}; FALLING BACK to the last good copy, {} (the most recent update of this "
                     "state may be lost)",
                     current.result.error->message, describeBackup(type));
    previous.result.usedBackup = true;
    return std::move(previous.result);
}

void FileStorage::preserveDamagedImage() const
{
    const std::filesystem::path copy = path_.string() + ".corrupt";
    if (blockDevice_)
    {
        return;
    }
    const std::uint64_t size = currentSize();
    if (size > kMaxImageCopy)
    {
        spdlog::critical("{}: damaged image too large to keep a copy", path_.string());
        return;
    }
    protocol::Bytes bytes(static_cast<std::size_t>(size));
    UniqueFd out(::open(copy.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        kDefaultStateFileMode));
    if (!out.valid())
    {
        // An earlier copy of a damaged image is kept as it is: it is the older evidence.
        return;
    }
    if (posix::preadAll(fd_.get(), bytes, 0) != 0 || posix::writeAll(out.get(), bytes) != 0 ||
        posix::fsyncRetry(out.get()) != 0 || out.close() != 0)
    {
        spdlog::critical("{}: could not keep a copy of the damaged image", copy.string());
        return;
    }
    spdlog::critical("damaged image kept as {}", copy.string());
}

std::optional<ImageTable> FileStorage::plan(const ImageTable& base, std::size_t slot,
                                            std::uint32_t length, std::string& why) const
{
    // Where the new section may go: not over anything the new header keeps, nor over the
    // current version (the old header, live until the switch, points at it).
    std::vector<ImageEntry> avoid(base.begin(), base.begin() + kHoleBase);
    avoid.push_back(table_.at(slot));
    const std::vector<Extent> busy = usedExtents(avoid);

    ImageTable next = base;
    ImageEntry& entry = next.at(slot);
    std::optional<Extent> best;
    for (const Extent& gap : gapsBetween(busy))
    {
        if (gap.end - gap.begin >= length && (!best || gap.end - gap.begin <
                                                           best->end - best->begin))
        {
            best = gap;
        }
    }
    if (best)
    {
        // Take the whole gap: a remainder would be one more hole to describe.
        entry = ImageEntry{.offset = static_cast<std::uint32_t>(best->begin),
                           .dataLength = length,
                           .sectionLength = static_cast<std::uint32_t>(best->end - best->begin)};
    }
    else
    {
        const std::uint64_t start = endOf(busy);
        const std::uint64_t limit = blockDevice_ ? capacity_ : kMaxImageEnd;
        std::uint64_t section = roundUpToPowerOfTwo(length); // as swtpm sizes sections
        if (start + section > limit)
        {
            section = length;
        }
        if (start + section > limit)
        {
            why = fmt::format("no room for {} bytes: the image ends at {} and {} bytes are in use",
                              length, limit, start);
            return std::nullopt;
        }
        entry = ImageEntry{.offset = static_cast<std::uint32_t>(start),
                           .dataLength = length,
                           .sectionLength = static_cast<std::uint32_t>(section)};
    }

    // Describe every gap among the sections the new header keeps with a hole entry, so the
    // layout stays packed as swtpm's compaction expects.
    for (std::size_t i = kHoleBase; i < kImageEntries; ++i)
    {
        next.at(i) = ImageEntry{};
    }
    const std::vector<Extent> gaps =
        gapsBetween(usedExtents(std::span(next.begin(), next.begin() + kHoleBase)));
    if (gaps.size() > kImageEntries - kHoleBase)
    {
        why = fmt::format("the image is too fragmented ({} gaps)", gaps.size());
        return std::nullopt;
    }
    std::size_t hole = kHoleBase;
    for (const Extent& gap : gaps)
    {
        next.at(hole++) = ImageEntry{.offset = static_cast<std::uint32_t>(gap.begin),
                                     .dataLength = 0,
                                     .sectionLength = static_cast<std::uint32_t>(gap.end -
                                                                                 gap.begin)};
    }
    return next;
}

std::optional<BlobError> FileStorage::store(protocol::BlobType type, protocol::ByteView plaintext)
{
    const std::string what = describe(type);
    if (!fd_)
    {
        return BlobError{.code = rc::kFail, .message = what + ": storage not initialised"};
    }
    if (plaintext.size() > kMaxStateFileSize - kBlobHeaderSize - kTlvHeaderSize)
    {
        return BlobError{.code = rc::kFail,
                         .message = fmt::format("{}: {} bytes of state exceed the limit", what,
                                                plaintext.size())};
    }
    if (auto error = takeWorkerError())
    {
        return error;
    }
    EncodeResult encoded = encodeForStorage(plaintext, options_.stateKey, what);
    if (encoded.error)
    {
        return std::move(encoded.error);
    }
    const auto length = static_cast<std::uint32_t>(encoded.blob.size());

    const std::size_t slot = slotOf(type);
    Known& state = known(type);
    if (state == Known::Unknown)
    {
        const ImageEntry current = table_.at(slot);
        const SectionRead read = current.used() ? readSection(current, what) : SectionRead{};
        state = !current.used()                           ? Known::Absent
                : read.result.status == LoadStatus::Ok    ? Known::Good
                : read.damaged                            ? Known::Damaged
                                                          : Known::Unknown;
    }

    // What the new header keeps besides the new section.
    ImageTable base = table_;
    ImageEntry& backup = base.at(kBackupBase + slot);
    if (!options_.backup || state == Known::Absent)
    {
        backup = ImageEntry{};
    }
    else if (state == Known::Good)
    {
        backup = table_.at(slot); // the current version becomes the last good copy
    }
    // Damaged: the backup stays the last good copy, the damaged section is let go.
    base.at(slot) = ImageEntry{};

    std::string why;
    std::optional<ImageTable> next = plan(base, slot, length, why);
    if (!next)
    {
        // Make room by letting the other blobs' backup copies go, never this one's.
        for (std::size_t other = 0; other < kBlobSlots; ++other)
        {
            if (other != slot)
            {
                base.at(kBackupBase + other) = ImageEntry{};
            }
        }
        next = plan(base, slot, length, why);
        if (!next)
        {
            return BlobError{.code = rc::kFail, .message = fmt::format("{}: {}", what, why)};
        }
        spdlog::warn("{}: the image is nearly full: dropped the other backup copies", where());
    }

    const ImageEntry& section = next->at(slot);
    std::uint64_t end = kImageHeaderSize;
    for (const ImageEntry& entry : *next)
    {
        end = std::max(end, entry.used() ? entry.end() : 0);
    }
    // swtpm maps the whole file and moves sections up to the last one's end: keep the file at
    // least that long.
    if (!blockDevice_ && currentSize() < end)
    {
        if (::ftruncate(fd_.get(), static_cast<off_t>(end)) != 0)
        {
            return posix::placeError(what, "cannot grow the image", errno);
        }
        step("grown");
    }
    if (const int err = posix::pwriteAll(fd_.get(), encoded.blob, section.offset); err != 0)
    {
        return posix::placeError(what, "cannot write", err);
    }
    step("section-written");
    if (options_.fsync == FsyncPolicy::Always)
    {
        // The header must not point at data that is not on disk yet.
        if (const int err = posix::fdatasyncRetry(fd_.get()); err != 0)
        {
            return posix::placeError(what, "cannot fsync", err);
        }
        step("section-synced");
    }
    if (auto error = writeTable(*next, type))
    {
        return error;
    }
    state = Known::Good;
    return std::nullopt;
}

std::optional<BlobError> FileStorage::writeTable(const ImageTable& table, protocol::BlobType type)
{
    // One write of the header's 192 bytes, all inside the first sector: the switch is atomic.
    const auto bytes = serializeImageHeader(table);
    if (const int err = posix::pwriteAll(fd_.get(), bytes, 0); err != 0)
    {
        return posix::placeError(describe(type), "cannot write the image header", err);
    }
    table_ = table;
    step("header-written");
    switch (options_.fsync)
    {
    case FsyncPolicy::Always:
        if (const int err = posix::fdatasyncRetry(fd_.get()); err != 0)
        {
            return posix::placeError(describe(type), "cannot fsync the image header", err);
        }
        step("header-synced");
        break;
    case FsyncPolicy::Deferred:
        if (!worker_)
        {
            worker_ = std::make_unique<SyncWorker>();
        }
        worker_->submit(UniqueFd{}, fd_.get(), describe(type));
        break;
    case FsyncPolicy::Never:
        break;
    }
    return std::nullopt;
}

std::optional<BlobError> FileStorage::remove(protocol::BlobType type, bool mustExist)
{
    const std::string what = describe(type);
    if (!fd_)
    {
        return BlobError{.code = rc::kFail, .message = what + ": storage not initialised"};
    }
    const std::size_t slot = slotOf(type);
    known(type) = Known::Absent;
    if (!table_.at(slot).used())
    {
        if (mustExist)
        {
            return posix::placeError(what, "cannot remove", ENOENT);
        }
        if (!table_.at(kBackupBase + slot).used())
        {
            return std::nullopt;
        }
    }
    ImageTable next = table_;
    next.at(slot) = ImageEntry{};
    next.at(kBackupBase + slot) = ImageEntry{}; // a deleted blob has no last good copy either
    for (std::size_t i = kHoleBase; i < kImageEntries; ++i)
    {
        next.at(i) = ImageEntry{};
    }
    std::size_t hole = kHoleBase;
    for (const Extent& gap :
         gapsBetween(usedExtents(std::span(next.begin(), next.begin() + kHoleBase))))
    {
        if (hole == kImageEntries)
        {
            return BlobError{.code = rc::kFail,
                             .message = what + ": cannot remove: the image is too fragmented"};
        }
        next.at(hole++) = ImageEntry{.offset = static_cast<std::uint32_t>(gap.begin),
                                     .dataLength = 0,
                                     .sectionLength = static_cast<std::uint32_t>(gap.end -
                                                                                 gap.begin)};
    }
    return writeTable(next, type);
}

std::optional<std::uint64_t> FileStorage::storedSize(protocol::BlobType type) const
{
    if (!fd_)
    {
        throw std::logic_error(describe(type) + ": storage not initialised");
    }
    const ImageEntry& entry = table_.at(slotOf(type));
    if (!entry.used())
    {
        return std::nullopt;
    }
    return entry.dataLength;
}

bool FileStorage::lock(unsigned retries, std::string* error)
{
    if (locked_)
    {
        return true;
    }
    auto fail = [&](std::string message)
    {
        if (error != nullptr)
        {
            *error = std::move(message);
        }
        return false;
    };
    if (!fd_)
    {
        return fail(where() + ": storage not initialised");
    }
    // The lock sits on the image itself (protocol.md §7.7). It is tied to this process and
    // file: nothing else in the daemon opens the image, so no other close can drop it.
    struct flock fl
    {
    };
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    for (unsigned attempt = 0;; ++attempt)
    {
        if (posix::setLock(fd_.get(), &fl) == 0)
        {
            locked_ = true;
            return true;
        }
        const int err = errno;
        if (err == EINTR)
        {
            continue;
        }
        if ((err != EACCES && err != EAGAIN) || attempt >= retries)
        {
            if (err == EACCES || err == EAGAIN)
            {
                return fail(fmt::format("{}: state is locked by another process", where()));
            }
            return fail(fmt::format("{}: cannot lock: {}", where(), errnoText(err)));
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(kLockRetryIntervalMs));
    }
}

void FileStorage::unlock() noexcept
{
    if (!locked_)
    {
        return;
    }
    struct flock fl
    {
    };
    fl.l_type = F_UNLCK;
    fl.l_whence = SEEK_SET;
    (void)posix::setLock(fd_.get(), &fl);
    locked_ = false;
}

std::optional<BlobError> FileStorage::takeWorkerError()
{
    return takeSyncError(worker_.get());
}

void FileStorage::flush()
{
    flushSyncWorker(worker_.get());
}

} // namespace vtpm::state
