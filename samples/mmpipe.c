/* mmpipe — command-line tool. Each subcommand is a short function over the public API. */
#include "mmpipe/mmpipe.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
        "mmpipe %s — run multimodal LLM pipelines locally\n"
        "\n"
        "usage: mmpipe COMMAND [options]\n"
        "\n"
        "commands:\n"
        "  info FILE|DIR     describe a model file (GGUF) or folder (Hugging Face / diffusers)\n"
        "  version           print the version\n"
        "\n"
        "Run 'mmpipe COMMAND --help' for the options of one command.\n",
        mmp_version());
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) { usage(stdout); return 0; }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) { printf("mmpipe %s\n", mmp_version()); return 0; }
    fprintf(stderr, "mmpipe: unknown command '%s' (see 'mmpipe --help')\n", cmd);
    return 2;
}
