#include "tools/vtpmctl/cli.hpp"

#include "tools/vtpmctl/commands.hpp"
#include "tools/vtpmctl/exit_codes.hpp"

#include <CLI/CLI.hpp>

#include <functional>

namespace vtpm::tools
{

namespace
{

constexpr const char* kNameHelp =
    "instance name: [A-Za-z0-9][A-Za-z0-9_.-]{0,63} (usually the VM's name)";

constexpr const char* kFooter =
    "Instances live in /var/lib/vtpm/NAME + /run/vtpm/NAME (root), in the XDG data and\n"
    "runtime directories (other users), or under --root DIR / $VTPM_ROOT (DIR/lib, DIR/run).\n"
    "Exit codes: 0 ok, 1 operation failed, 2 usage or bad name, 3 no such instance,\n"
    "4 exists / already running / busy, 5 a VM is attached, 6 not running.";

std::optional<std::filesystem::path> pathOption(const CLI::Option* option, const std::string& value)
{
    return option->count() > 0 ? std::optional(std::filesystem::path(value)) : std::nullopt;
}

CLI::App* subcommand(CLI::App& app, const char* name, const char* description)
{
    CLI::App* sub = app.add_subcommand(name, description);
    sub->footer(kFooter);
    return sub;
}

} // namespace

int runCli(int argc, char** argv)
{
    CLI::App app{"vtpmctl: create, start, stop and inspect vtpmd instances, one vTPM per VM.",
                 "vtpmctl"};
    app.footer(kFooter);
    app.require_subcommand(1);
    app.fallthrough(); // global options may follow the subcommand too

    GlobalOptions global;
    std::string root;
    std::string vtpmd;
    CLI::Option* rootOption =
        app.add_option("--root", root, "keep all instances under DIR (tests, containers)")
            ->type_name("DIR");
    CLI::Option* vtpmdOption = app.add_option("--vtpmd", vtpmd,
                                              "the vtpmd binary to run (default: $VTPMD, else the "
                                              "installed one)")
                                   ->type_name("PATH");
    std::function<void()> action;

    CreateOptions create;
    std::string keyFile;
    std::string passphraseFile;
    CLI::App* createCmd =
        subcommand(app, "create", "make a new instance (state dir, instance.json)");
    createCmd->add_option("name", create.name, kNameHelp)->required();
    createCmd->add_option("--tpm", create.tpm, "TPM version (default 2.0)")
        ->check(CLI::IsMember({"2.0", "1.2"}));
    CLI::Option* keyOption =
        createCmd
            ->add_option("--key-file", keyFile,
                         "encrypt the TPM state with the AES-256 key in FILE (64 hex digits)")
            ->type_name("FILE");
    CLI::Option* passOption = createCmd
                                  ->add_option("--passphrase-file", passphraseFile,
                                               "encrypt the TPM state with a key derived from the "
                                               "passphrase in FILE")
                                  ->type_name("FILE");
    keyOption->excludes(passOption);
    createCmd->add_option("--device", create.device, "QEMU TPM device: tis (default) or crb")
        ->check(CLI::IsMember({"tis", "crb"}));
    createCmd
        ->add_option("--socket-mode", create.socketMode,
                     "octal mode of the control socket QEMU connects to (default 0600)")
        ->type_name("0NNN");
    createCmd->callback(
        [&]
        {
            create.keyFile = pathOption(keyOption, keyFile);
            create.passphraseFile = pathOption(passOption, passphraseFile);
            action = [&]
            {
                createInstance(global, create);
            };
        });

    StartOptions start;
    CLI::App* startCmd = subcommand(
        app, "start", "start the instance's vtpmd, wait until it is ready, print QEMU arguments");
    startCmd->add_option("name", start.name, kNameHelp)->required();
    startCmd->add_flag("--create", start.create, "create the instance (defaults) if missing");
    startCmd->add_option("--timeout", start.timeoutSeconds,
                         "seconds to wait for READY=1 (default 10)");
    startCmd->add_flag("--no-systemd", start.noSystemd,
                       "spawn vtpmd directly even where systemd runs the host");
    startCmd->callback(
        [&]
        {
            action = [&]
            {
                startInstance(global, start);
            };
        });

    StopOptions stop;
    CLI::App* stopCmd = subcommand(
        app, "stop", "stop the instance's vtpmd: CMD_SHUTDOWN, then SIGTERM, then SIGKILL");
    stopCmd->add_option("name", stop.name, kNameHelp)->required();
    stopCmd->add_option("--timeout", stop.timeoutSeconds,
                        "seconds for all steps together (default 10)");
    stopCmd->add_flag("--force", stop.force, "stop even while a VM is attached");
    stopCmd->add_flag("--no-systemd", stop.noSystemd, "do not use systemctl");
    stopCmd->callback(
        [&]
        {
            action = [&]
            {
                stopInstance(global, stop);
            };
        });

    bool listJson = false;
    CLI::App* listCmd = subcommand(app, "list", "show all instances and their health");
    listCmd->add_flag("--json", listJson, "print a JSON array instead of a table");
    listCmd->callback(
        [&]
        {
            action = [&]
            {
                listInstances(global, listJson);
            };
        });

    std::string statusName;
    bool statusJson = false;
    CLI::App* statusCmd = subcommand(app, "status", "show one instance in detail");
    statusCmd->add_option("name", statusName, kNameHelp)->required();
    statusCmd->add_flag("--json", statusJson, "print JSON (includes vtpmd's full health report)");
    statusCmd->callback(
        [&]
        {
            action = [&]
            {
                showStatus(global, statusName, statusJson);
            };
        });

    std::string qemuName;
    CLI::App* qemuCmd = subcommand(app, "qemu-args", "print the QEMU arguments for the instance");
    qemuCmd->add_option("name", qemuName, kNameHelp)->required();
    qemuCmd->callback(
        [&]
        {
            action = [&]
            {
                printQemuArgs(global, qemuName);
            };
        });

    StopOptions destroy;
    CLI::App* destroyCmd = subcommand(
        app, "destroy", "delete the instance: its TPM state, configuration and runtime files");
    destroyCmd->add_option("name", destroy.name, kNameHelp)->required();
    destroyCmd->add_flag("--force", destroy.force, "stop it first if it is running");
    destroyCmd->add_flag("--no-systemd", destroy.noSystemd, "do not use systemctl");
    destroyCmd->callback(
        [&]
        {
            action = [&]
            {
                destroyInstance(global, destroy);
            };
        });

    std::string execName;
    CLI::App* execCmd = subcommand(
        app, "exec", "replace vtpmctl with the instance's vtpmd (for systemd's ExecStart)");
    execCmd->add_option("name", execName, kNameHelp)->required();
    execCmd->callback(
        [&]
        {
            action = [&]
            {
                execInstance(global, execName);
            };
        });

    CtrlOptions ctrl;
    std::string blobFile;
    CLI::App* ctrlCmd = subcommand(
        app, "ctrl",
        "control-channel operations: init | stop | shutdown | caps | info | save TYPE FILE | "
        "load TYPE FILE (TYPE: permanent, volatile, savestate)");
    ctrlCmd->add_option("name", ctrl.name, kNameHelp)->required();
    ctrlCmd
        ->add_option("operation", ctrl.operation,
                     "init: start the TPM; stop: stop the TPM; shutdown: end vtpmd; caps; "
                     "info; save/load: copy a state blob to/from FILE (load needs a stopped "
                     "TPM, then init)")
        ->required()
        ->check(CLI::IsMember({"init", "stop", "shutdown", "caps", "info", "save", "load"}));
    ctrlCmd->add_option("type", ctrl.blobType, "blob type for save/load")
        ->check(CLI::IsMember({"permanent", "volatile", "savestate"}));
    ctrlCmd->add_option("file", blobFile, "blob file for save/load");
    ctrlCmd->add_option("--timeout", ctrl.timeoutSeconds,
                        "seconds to wait for the reply (default 5)");
    ctrlCmd->callback(
        [&]
        {
            const bool blob = ctrl.operation == "save" || ctrl.operation == "load";
            if (blob != (!ctrl.blobType.empty() && !blobFile.empty()))
            {
                throw CLI::ValidationError("ctrl", blob
                                                       ? ctrl.operation + " needs TYPE and FILE"
                                                       : ctrl.operation + " takes no TYPE or FILE");
            }
            ctrl.file = blobFile;
            action = [&]
            {
                runCtrl(global, ctrl);
            };
        });

    try
    {
        app.parse(argc, argv);
    }
    catch (const CLI::ParseError& e)
    {
        const int code = app.exit(e);
        return code == 0 ? 0 : static_cast<int>(ExitCode::Usage);
    }
    global.root = pathOption(rootOption, root);
    global.vtpmd = pathOption(vtpmdOption, vtpmd);
    action();
    return 0;
}

} // namespace vtpm::tools
