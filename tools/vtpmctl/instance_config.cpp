#include "tools/vtpmctl/instance_config.hpp"

#include "state/unique_fd.hpp"
#include "tools/vtpmctl/exit_codes.hpp"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fcntl.h>
#include <unistd.h>

namespace vtpm::tools
{

namespace
{

std::optional<std::filesystem::path> optionalPath(const nlohmann::json& j, const char* key)
{
    const auto it = j.find(key);
    if (it == j.end() || it->is_null())
    {
        return std::nullopt;
    }
    return std::filesystem::path(it->get<std::string>());
}

nlohmann::json pathOrNull(const std::optional<std::filesystem::path>& p)
{
    return p ? nlohmann::json(p->string()) : nlohmann::json(nullptr);
}

[[noreturn]] void failWrite(const std::filesystem::path& file, const char* what)
{
    throw CommandError(ExitCode::Failed, std::string("cannot ") + what + " " + file.string() +
                                             ": " + std::strerror(errno) +
                                             "; check the directory's permissions and free space");
}

} // namespace

InstanceConfig loadConfig(const std::filesystem::path& file)
{
    std::ifstream in(file);
    if (!in)
    {
        throw CommandError(ExitCode::Failed, "cannot read " + file.string() + ": " +
                                                 std::strerror(errno) +
                                                 "; check its permissions (run as its owner)");
    }
    try
    {
        const nlohmann::json j = nlohmann::json::parse(in);
        InstanceConfig c;
        c.name = j.at("name").get<std::string>();
        c.tpm = j.value("tpm", std::string("2.0"));
        c.device = j.value("device", std::string("tis"));
        c.keyFile = optionalPath(j, "keyFile");
        c.passphraseFile = optionalPath(j, "passphraseFile");
        c.socketMode = j.value("socketMode", std::string("0600"));
        c.created = j.value("created", std::int64_t{0});
        if ((c.tpm != "2.0" && c.tpm != "1.2") || (c.device != "tis" && c.device != "crb") ||
            !socketModeProblem(c.socketMode).empty())
        {
            throw std::runtime_error("unsupported tpm, device or socketMode value");
        }
        return c;
    }
    catch (const std::exception& e)
    {
        throw CommandError(ExitCode::Failed, "malformed " + file.string() + " (" + e.what() +
                                                 "); fix it by hand or destroy and re-create "
                                                 "the instance");
    }
}

void saveConfig(const std::filesystem::path& file, const InstanceConfig& c, bool exclusive)
{
    const nlohmann::json j = {
        {"name", c.name},
        {"tpm", c.tpm},
        {"device", c.device},
        {"keyFile", pathOrNull(c.keyFile)},
        {"passphraseFile", pathOrNull(c.passphraseFile)},
        {"socketMode", c.socketMode},
        {"created", c.created},
    };
    const std::string text = j.dump(2) + "\n";
    const std::filesystem::path tmp = file.string() + ".tmp." + std::to_string(::getpid());
    state::UniqueFd fd(
        ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd)
    {
        failWrite(tmp, "create");
    }
    if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
        ::fsync(fd.get()) != 0 || fd.close() != 0)
    {
        ::unlink(tmp.c_str());
        failWrite(tmp, "write");
    }
    if (exclusive)
    {
        const int linked = ::link(tmp.c_str(), file.c_str());
        const int error = errno;
        ::unlink(tmp.c_str());
        if (linked != 0 && error == EEXIST)
        {
            throw CommandError(ExitCode::Busy, file.string() + " appeared while it was being "
                                                               "created (a concurrent create?)");
        }
        errno = error;
        if (linked != 0)
        {
            failWrite(file, "link");
        }
        return;
    }
    if (::rename(tmp.c_str(), file.c_str()) != 0)
    {
        ::unlink(tmp.c_str());
        failWrite(file, "rename into");
    }
}

std::string socketModeProblem(const std::string& mode)
{
    if (mode.size() != 4 || mode[0] != '0' ||
        mode.find_first_not_of("01234567") != std::string::npos)
    {
        return "'" + mode + "' is not an octal mode of the form 0NNN (e.g. 0600 or 0660)";
    }
    if (mode[1] != '6' && mode[1] != '7')
    {
        return "mode " + mode + " does not let the owner read and write the socket";
    }
    return {};
}

} // namespace vtpm::tools
