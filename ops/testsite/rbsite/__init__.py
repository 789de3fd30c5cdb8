"""rbsite: the remotebridge test site, a realistic remote supercomputer on one machine.

Network namespaces stand in for hosts:

    home (root ns, 10.77.0.1 on bridge rbbr-pub)
      |  1 Gbit/s
     dmz   (10.77.0.2)  sshd: publickey + HOTP one-time password, bounce only
      |  200 Mbit/s each          (front ends reject everything but the dmz)
     fe1 fe2 fe3 (10.77.0.11-13 public, 10.77.1.11-13 cluster net)
      |  cluster net rbbr-clu (home is not on it, no route home)
     ctl (10.77.1.5, slurmctld)   cn1 cn2 (10.77.1.21-22, slurmd)

Modules: config (settings, hosts, paths), proc (commands, files, processes),
texts (config texts from templates/), network (netns, veth, tc, /etc/hosts),
sshd (sshd, client bundle, one-time passwords), slurm (munge, Slurm),
lifecycle (up, down, status), switches (expire, cut, shape, ...), cli.
Python 3 standard library only; most verbs must run as root.
"""
