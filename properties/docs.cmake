# Documentation: every Markdown document (and section) that code or docs cite exists
# (scripts/check_citations.py), and the checker itself finds the broken citations it plants.
find_program(MOECHECK_PYTHON3 NAMES python3 REQUIRED)
add_test(NAME doc_citations
         COMMAND ${MOECHECK_PYTHON3} ${PROJECT_SOURCE_DIR}/scripts/check_citations.py --root ${PROJECT_SOURCE_DIR})
add_test(NAME doc_citations_self_test
         COMMAND ${MOECHECK_PYTHON3} ${PROJECT_SOURCE_DIR}/scripts/check_citations.py --self-test)
set_tests_properties(doc_citations doc_citations_self_test PROPERTIES LABELS quick TIMEOUT 60)
