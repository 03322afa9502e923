#include "protocol/blob_type.hpp"
#include "protocol/byte_io.hpp"
#include "state/key.hpp"
#include "state/stored_blob.hpp"
#include "test/fuzz/fuzz_target.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <numeric>

// Stored-blob and migration-blob target (protocol.md §7.4, §7.5): the parser and decryption
// path that swtpm's CVEs were in. The input is one blob as read from disk or received with
// SET_STATEBLOB. It is decoded with no key, a fixed AES-128 and a fixed AES-256 key (as state
// key and as migration key, in every combination, with and without the request's ENCRYPTED
// flag). Invariants:
//  * nothing crashes or reads out of bounds, and decoders never throw;
//  * parseBlobHeader accepts exactly when totlen = input size, and findTlv returns views
//    inside the input;
//  * a successful decode re-encodes (with the same keys) to a blob that decodes to the same
//    plaintext; a migration result is exactly one of error / empty / plaintext.
// The seed corpus (make_blob_corpus.py) holds valid blobs under the same fixed keys, so the
// fuzzer starts past the MAC check; legacy v1 payloads have no MAC, so mutations there reach
// the padding and hash checks.
using namespace vtpm;
using protocol::Bytes;
using protocol::ByteView;

namespace
{

// The same key bytes as make_blob_corpus.py: 0x10..0x1f and 0x40..0x5f.
state::Key fixedKey(std::size_t n, std::uint8_t first)
{
    std::array<std::uint8_t, 32> raw{};
    std::iota(raw.begin(), raw.end(), first);
    return state::Key::fromBytes(ByteView(raw).first(n));
}

bool inside(ByteView part, ByteView whole)
{
    return part.empty() ||
           (part.data() >= whole.data() && part.size() <= whole.size() &&
            static_cast<std::size_t>(part.data() - whole.data()) <= whole.size() - part.size());
}

bool same(ByteView a, ByteView b)
{
    return std::ranges::equal(a, b);
}

void checkStored(ByteView input, const state::Key* key)
{
    const state::DecodeResult r = state::decodeStoredBlob(input, key);
    if (!r.ok())
    {
        FUZZ_CHECK(r.plaintext.empty());
        FUZZ_CHECK(r.error->code != protocol::rc::kSuccess);
        return;
    }
    const Bytes again = state::encodeStoredBlob(r.plaintext, key);
    const state::DecodeResult r2 = state::decodeStoredBlob(again, key);
    FUZZ_CHECK(r2.ok() && same(r2.plaintext, r.plaintext));
}

void checkMigration(ByteView input, std::uint32_t requestFlags, const state::Key* stateKey,
                    const state::Key* migKey)
{
    const state::MigrationDecodeResult r =
        state::decodeMigrationBlob(input, requestFlags, stateKey, migKey);
    if (!r.ok())
    {
        FUZZ_CHECK(r.plaintext.empty() && !r.empty);
        FUZZ_CHECK(r.error->code != protocol::rc::kSuccess);
        return;
    }
    if (r.empty)
    {
        FUZZ_CHECK(r.plaintext.empty());
        FUZZ_CHECK(input.size() <= state::kBlobHeaderSize);
        return;
    }
    for (const bool decrypted : {false, true})
    {
        const state::MigrationBlob m =
            state::encodeMigrationBlob(r.plaintext, stateKey, decrypted, migKey);
        const state::MigrationDecodeResult r2 =
            state::decodeMigrationBlob(m.blob, m.stateFlags, stateKey, migKey);
        FUZZ_CHECK(r2.ok() && !r2.empty && same(r2.plaintext, r.plaintext));
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    static const state::Key key128 = fixedKey(16, 0x10);
    static const state::Key key256 = fixedKey(32, 0x40);
    const std::array<const state::Key*, 3> keys{nullptr, &key128, &key256};
    const ByteView input(data, size);

    const state::HeaderResult header = state::parseBlobHeader(input);
    if (!header.error)
    {
        FUZZ_CHECK(header.header.totLen == size);
        FUZZ_CHECK(header.payload.size() + state::kBlobHeaderSize == size);
        FUZZ_CHECK(inside(header.payload, input));
    }
    else
    {
        FUZZ_CHECK(header.error->code != protocol::rc::kSuccess);
    }
    // findTlv over the raw input and over the payload: views stay inside.
    for (std::uint16_t t = 1; t <= 7; ++t)
    {
        if (const auto v = state::findTlv(input, t))
        {
            FUZZ_CHECK(inside(*v, input));
        }
        if (!header.error)
        {
            if (const auto v = state::findTlv(header.payload, t))
            {
                FUZZ_CHECK(inside(*v, header.payload));
            }
        }
    }

    for (const state::Key* key : keys)
    {
        checkStored(input, key);
    }
    for (const state::Key* stateKey : keys)
    {
        for (const state::Key* migKey : keys)
        {
            checkMigration(input, 0, stateKey, migKey);
            checkMigration(input, protocol::stateflag::kEncrypted, stateKey, migKey);
        }
    }
    return 0;
}
