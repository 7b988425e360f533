// Links moecheck::corpus alone: its own dependencies are complete (the contract line of a case is
// parsed by the oracle library it depends on). Reads one .case file and prints what it holds.
#include <exception>
#include <iostream>

#include <moecheck/harness/core/corpus.hpp>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: corpus_only <file.case>\n";
    return 2;
  }
  try {
    const moecheck::CorpusEntry e = moecheck::read_corpus_file(argv[1]);
    std::cout << "corpus only: " << moecheck::family_name(e.c.family) << " " << moecheck::dtype_name(e.c.dtype)
              << " T=" << e.c.T << " E=" << e.c.E << " k=" << e.c.k << " layout=" << moecheck::layout_name(e.c.layout)
              << " target=" << e.target << " contract=" << e.contract << "\n";
  } catch (const std::exception& ex) {
    std::cerr << "corpus only: " << ex.what() << "\n";
    return 1;
  }
  return 0;
}
