#include "daemon/introspection.hpp"

#include "daemon/tpm_engine.hpp"
#include "protocol/blob_type.hpp"
#include "state/storage.hpp"
#include "vtpmd_config.hpp"

#include <nlohmann/json.hpp>

#include <vector>

namespace vtpm::daemon
{

namespace
{

constexpr std::uint64_t kInfoTpmFeatures = 4;

// RSA key sizes of the TPM 2 personality, from libtpms' feature report.
std::vector<int> rsaKeySizes()
{
    const auto json = TpmEngine::featureInfo(protocol::TpmVersion::Tpm2, kInfoTpmFeatures);
    if (!json)
    {
        return {};
    }
    const auto parsed = nlohmann::json::parse(*json, nullptr, false);
    if (parsed.is_discarded())
    {
        return {};
    }
    std::vector<int> sizes;
    const auto features = parsed.find("TPMFeatures");
    if (features != parsed.end() && features->contains("RSAKeySizes"))
    {
        for (const auto& size : (*features)["RSAKeySizes"])
        {
            if (size.is_number_integer())
            {
                sizes.push_back(size.get<int>());
            }
        }
    }
    return sizes;
}

// swtpm separates JSON tokens with single spaces; libvirt does not care, people diffing do.
std::string quotedList(const std::vector<std::string>& items)
{
    std::string out = "[";
    for (std::size_t i = 0; i < items.size(); ++i)
    {
        out += (i == 0 ? " \"" : ", \"") + items[i] + "\"";
    }
    return out + (items.empty() ? "]" : " ]");
}

} // namespace

std::string capabilitiesJson(const Options& options)
{
    std::vector<std::string> features;
    if (TpmEngine::supports(protocol::TpmVersion::Tpm12))
    {
        features.emplace_back("tpm-1.2");
    }
    if (TpmEngine::supports(protocol::TpmVersion::Tpm2))
    {
        features.emplace_back("tpm-2.0");
    }
    for (const char* f : {"tpm-send-command-header", "flags-opt-startup",
                          "flags-opt-disable-auto-shutdown", "ctrl-opt-terminate",
                          "cmdarg-key-fd", "cmdarg-pwd-fd", "cmdarg-print-states",
                          "cmdarg-migration", "nvram-backend-dir", "nvram-backend-file",
                          "tpmstate-opt-lock", "tpmstate-dir-backend-opt-backup",
                          "tpmstate-dir-backend-opt-fsync", "systemd-notify"})
    {
        features.emplace_back(f);
    }
    if (options.tpmVersion == protocol::TpmVersion::Tpm2)
    {
        for (int size : rsaKeySizes())
        {
            features.push_back("rsa-keysize-" + std::to_string(size));
        }
    }
    return "{ \"type\": \"swtpm\", \"features\": " + quotedList(features) +
           ", \"version\": \"" VTPMD_VERSION "\" }";
}

std::string statesJson(const Options& options)
{
    state::StorageOptions storageOptions;
    storageOptions.version = options.tpmVersion;
    storageOptions.fileMode = options.tpmstate.value().mode;
    const auto storage = state::openStorage(
        state::StorageUri{.kind = options.tpmstate->fileBackend ? state::StorageUri::Kind::File
                                                                : state::StorageUri::Kind::Dir,
                          .path = options.tpmstate->dir},
        storageOptions);
    storage->init();
    std::string out = "{ \"type\": \"swtpm\", \"states\": [";
    bool first = true;
    for (protocol::BlobType type : protocol::kAllBlobTypes)
    {
        if (const auto size = storage->storedSize(type))
        {
            out += first ? " " : ", ";
            out += "{\"name\": \"" + std::string(protocol::blobName(type)) +
                   "\", \"size\": " + std::to_string(*size) + "}";
            first = false;
        }
    }
    return out + (first ? "] }" : " ] }");
}

} // namespace vtpm::daemon
