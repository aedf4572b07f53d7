/* Validate a pipeline file and print its typed graph, using only the public API.
 *   pipeline_show FILE [NAME=VALUE ...]
 * With every parameter given, the stages are also created (models loaded) and the graph is
 * printed with the model-sized port types. */
#include <mmpipe/mmpipe.h>

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE.pipe [NAME=VALUE ...]\n", argv[0]);
        return 2;
    }
    printf("mmpipe %s\n", mmp_version());
    int rc = 1;
    mmp_registry *reg = mmp_registry_new();
    mmp_pipeline_desc *d = reg ? mmp_pipeline_desc_load(argv[1]) : NULL;
    mmp_pipeline *p = NULL;
    if (!d) goto done;
    for (int i = 2; i < argc; i++) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s", argv[i]);
        char *eq = strchr(buf, '=');
        if (!eq) { fprintf(stderr, "%s: want NAME=VALUE, got '%s'\n", argv[0], argv[i]); goto done; }
        *eq = 0;
        if (mmp_pipeline_desc_set_param(d, buf, eq + 1) != MMP_OK) goto done;
    }
    if (mmp_pipeline_desc_validate(d, reg) != MMP_OK) goto done;
    if (argc > 2) {
        if (!(p = mmp_pipeline_new(d, reg, NULL))) goto done;
        mmp_pipeline_print(p, stdout);
    } else {
        mmp_pipeline_desc_print(d, reg, stdout);
    }
    rc = 0;
done:
    if (rc) fprintf(stderr, "%s: %s\n", argv[0], mmp_last_error());
    mmp_pipeline_free(p);
    mmp_pipeline_desc_free(d);
    mmp_registry_free(reg);
    return rc;
}
