/*
 * cluster_scripts.h - the Lua scripts Redis runs for the cluster calls
 * (cluster_scripts.c says what each takes and returns).  Loaded once per
 * connection (SCRIPT LOAD) and called by their SHA1 (EVALSHA).
 */
#ifndef MSAPROXY_CLUSTER_SCRIPTS_H
#define MSAPROXY_CLUSTER_SCRIPTS_H

extern const char cluster_script_bucket[];
extern const char cluster_script_login[];
extern const char cluster_script_reset[];
extern const char cluster_script_ban[];
extern const char cluster_script_banlist[];
extern const char cluster_script_charges[];
extern const char cluster_script_files_commit[];
extern const char cluster_script_files_index[];

#endif
